"""Cost-scored policies: prefix-cache, queue-kv and auto, one formula with different weights.

For each available backend b, every term in 0..1:

    cost(b) = prefix_weight  * (1 - match(b))          share of prompt blocks b is not believed to hold
            + load_weight    * load(b) / max(max load, load_floor)
            + kv_weight      * kv(b)                   vllm:kv_cache_usage_perc
            + session_weight * [b is not the session's rendezvous backend]

load(b) is in-flight plus the engine's waiting queue (`state.loads`); unknown engine figures are
imputed with the mean of the known ones, so with no metrics at all the load is in-flight only
and the KV term is equal everywhere. The lowest cost wins, ties round-robin by name.

This is GIE's weighted scorer sum (queue, KV utilisation, prefix match) written as a cost, with
Dynamo's reading of the weights: a prefix hit is credited against the load it would add. Load
is divided by the largest load rather than min-max normalised as GIE does, so a difference of
one request among busy backends stays small instead of spanning the whole range.

Before scoring, the balance guard of vllm-router's cache_aware policy: when the busiest
candidate has more than `imbalance_abs` requests over the idlest and more than `imbalance_rel`
times as many, the least-loaded backend wins outright, so one popular prefix cannot pile its
traffic on one engine; the backend it lands on learns the prefix and shares it from then on.
"""

from __future__ import annotations

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies.base import Decision, Reason, Rendezvous, Rotation, least_loaded
from phalanx.router.policies.config import PolicyConfig
from phalanx.router.policies.prefix import PrefixIndex
from phalanx.router.policies.request import RoutingRequest
from phalanx.router.policies.state import Backends, BackendState, kv_term, loads

# Costs closer than this are a tie (they are sums of a few floats).
_TIE = 1e-9
_NO_MATCH: dict[str, int] = {}  # read only


class ScoredPolicy:
    """One cost formula; the registry builds `prefix-cache`, `queue-kv` and `auto` from it.

    A zero weight drops its term and its work: with `prefix_weight == 0` the prompt is never
    hashed, with `session_weight == 0` sessions are ignored.
    """

    __slots__ = (
        "_imbalance_abs",
        "_imbalance_rel",
        "_index",
        "_kv",
        "_load",
        "_load_floor",
        "_name",
        "_prefix",
        "_rendezvous",
        "_rotation",
        "_session",
    )

    def __init__(
        self,
        name: str,
        config: PolicyConfig,
        index: PrefixIndex,
        *,
        prefix_weight: float,
        load_weight: float,
        kv_weight: float,
        session_weight: float,
    ) -> None:
        self._name = name
        self._index = index
        self._prefix = prefix_weight
        self._load = load_weight
        self._kv = kv_weight
        self._session = session_weight
        self._load_floor = config.load_floor
        self._imbalance_abs = config.imbalance_abs
        self._imbalance_rel = config.imbalance_rel
        self._rotation = Rotation()
        self._rendezvous = Rendezvous()

    @property
    def name(self) -> str:
        return self._name

    @property
    def learns_prefixes(self) -> bool:
        return self._prefix > 0

    def choose(self, request: RoutingRequest, available: Backends, now: float) -> Decision | None:
        if not available:
            return None
        if len(available) == 1:
            return Decision(available[0].endpoint, self._name, "only-choice")
        load = loads(available)
        low = min(load)
        high = max(load)
        if high - low > self._imbalance_abs and high > self._imbalance_rel * low:
            return Decision(least_loaded(available, load, self._rotation).endpoint, self._name, "imbalance")

        blocks = 0
        matched = _NO_MATCH
        if self._prefix > 0:
            hashes = self._index.block_hashes(request)
            blocks = len(hashes)
            if blocks:
                matched = self._index.matches(hashes, {s.endpoint.name for s in available}, now)
        # None also where the term would add 0.0 to every cost.
        kv = kv_term(available) if self._kv > 0 else None
        sticky: str | None = None
        if self._session > 0 and request.session is not None:
            sticky = self._rendezvous.pick(request.session, available).endpoint.name

        load_scale = self._load / max(high, self._load_floor)
        prefix_scale = self._prefix / blocks if blocks else 0.0
        best_cost = float("inf")
        best: list[BackendState] = []
        for i, state in enumerate(available):
            name = state.endpoint.name
            cost = load_scale * load[i]
            if blocks:
                cost += prefix_scale * (blocks - matched.get(name, 0))
            if kv is not None:
                cost += self._kv * kv[i]
            if sticky is not None and name != sticky:
                cost += self._session
            if cost < best_cost - _TIE:
                best_cost = cost
                best = [state]
            elif cost <= best_cost + _TIE:
                best.append(state)

        chosen = self._rotation.pick(best)
        name = chosen.endpoint.name
        match = matched.get(name, 0) / blocks if blocks else 0.0
        reason: Reason = "least-loaded"
        if match > 0:
            reason = "prefix-hit"
        elif name == sticky:
            reason = "session"
        return Decision(chosen.endpoint, self._name, reason, match)

    def record(self, request: RoutingRequest, chosen: Endpoint, now: float) -> None:
        """Remember that `chosen` was sent this prompt (no-op without a prefix term)."""
        if self._prefix > 0:
            self._index.record(self._index.block_hashes(request), chosen.name, now)
