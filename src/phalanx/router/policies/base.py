"""The policy interface, the decision record, and the deterministic pickers the policies share."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies.request import RoutingRequest
from phalanx.router.policies.state import Backends, BackendState

# Why a backend was chosen; a short fixed vocabulary, safe as a metric label.
Reason = Literal[
    "only-choice",  # one candidate
    "rotation",  # round-robin
    "least-loaded",  # lowest load (or cost with no prefix or session in play)
    "sampled",  # power-of-two: the better of two random candidates
    "session",  # the backend the session hashes to
    "fallback",  # session policy, request without a session: least-loaded
    "prefix-hit",  # lowest cost, on a backend believed to hold part of the prompt
    "imbalance",  # balance guard: load too uneven to follow the cache
]


@dataclass(frozen=True, slots=True)
class Decision:
    """One routing decision, for the proxy (`endpoint`), metrics (`policy`, `reason`) and logs."""

    endpoint: Endpoint
    policy: str
    reason: Reason
    # Share of the prompt's blocks the chosen backend is believed to hold (prefix policies).
    prefix_match: float = 0.0

    def __str__(self) -> str:
        detail = f" {self.prefix_match:.2f}" if self.reason == "prefix-hit" else ""
        return f"{self.policy}: {self.endpoint.name} ({self.reason}{detail})"


class Policy(Protocol):
    """Filter -> score -> pick, the last two stages; `candidates()` is the first.

    `choose` picks among `available` (never empty-handed unless `available` is empty) and may
    advance cheap cursors; `record` is told where the request went and learns from it.
    """

    @property
    def name(self) -> str: ...

    def choose(self, request: RoutingRequest, available: Backends, now: float) -> Decision | None: ...

    def record(self, request: RoutingRequest, chosen: Endpoint, now: float) -> None: ...


class Rotation:
    """Round-robin by name that survives a changing set: the next name after the last one
    picked, wrapping around. O(candidates), no sorting."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: str | None = None

    def pick(self, states: Sequence[BackendState]) -> BackendState:
        last = self.last
        first = after = states[0]
        first_name = first.endpoint.name
        after_name: str | None = None
        for state in states:
            name = state.endpoint.name
            if name < first_name:
                first, first_name = state, name
            if last is not None and name > last and (after_name is None or name < after_name):
                after, after_name = state, name
        chosen = after if after_name is not None else first
        self.last = chosen.endpoint.name
        return chosen


def least_loaded(states: Sequence[BackendState], load: Sequence[float], rotation: Rotation) -> BackendState:
    """Lowest load, ties round-robin by name."""
    low = min(load)
    return rotation.pick([s for s, value in zip(states, load, strict=True) if value == low])


_MASK = (1 << 64) - 1


def stable_hash(text: str) -> int:
    """64 bits of blake2b: the same in every process, so router replicas agree on sessions.

    Any str hashes, lone surrogates included: a header's bytes that are not UTF-8 reach us as
    surrogates (aiohttp decodes with `surrogateescape`), and so does a JSON string's `\\udXXX`."""
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    # splitmix64's finaliser: every input bit flips about half the output bits.
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class Rendezvous:
    """Highest-random-weight hashing of a key over backend names.

    A key goes to the backend with the highest weight mix(hash(key) ^ hash(name)). Removing a
    backend moves only its own keys; adding one takes about 1/n of the keys and moves no other.
    Name hashes are cached (bounded: cleared past `_MAX_NAMES`).
    """

    _MAX_NAMES = 4096
    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[str, int] = {}

    def pick(self, key: str, states: Sequence[BackendState]) -> BackendState:
        k = stable_hash(key)
        names = self._names
        best = states[0]
        best_weight = -1
        for state in states:
            name = state.endpoint.name
            h = names.get(name)
            if h is None:
                if len(names) >= self._MAX_NAMES:
                    names.clear()
                h = names[name] = stable_hash(name)
            weight = _mix(k ^ h)
            if weight > best_weight:
                best, best_weight = state, weight
        return best
