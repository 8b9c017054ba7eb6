"""Policies by name, and the set a router keeps: its default plus per-request overrides."""

from __future__ import annotations

import random
from collections.abc import Callable

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies.base import Decision, Policy
from phalanx.router.policies.config import PolicyConfig
from phalanx.router.policies.prefix import PrefixIndex
from phalanx.router.policies.request import RoutingRequest
from phalanx.router.policies.scored import ScoredPolicy
from phalanx.router.policies.simple import LeastInFlight, PowerOfTwo, RoundRobin, SessionAffinity
from phalanx.router.policies.state import Backends

DEFAULT_POLICY = "auto"

_Builder = Callable[[PolicyConfig, random.Random, PrefixIndex], Policy]


def _scored(name: str, *, prefix: bool, kv: bool, session: bool) -> _Builder:
    def build(config: PolicyConfig, rng: random.Random, index: PrefixIndex) -> Policy:
        return ScoredPolicy(
            name,
            config,
            index,
            prefix_weight=config.prefix_weight if prefix else 0.0,
            load_weight=config.load_weight,
            kv_weight=config.kv_weight if kv else 0.0,
            session_weight=config.session_weight if session else 0.0,
        )

    return build


_BUILDERS: dict[str, _Builder] = {
    # Prefix-cache plus session affinity: the default (see the package docstring).
    "auto": _scored("auto", prefix=True, kv=True, session=True),
    "prefix-cache": _scored("prefix-cache", prefix=True, kv=True, session=False),
    "queue-kv": _scored("queue-kv", prefix=False, kv=True, session=False),
    "least-in-flight": lambda config, rng, index: LeastInFlight(),
    "power-of-two": lambda config, rng, index: PowerOfTwo(rng),
    "round-robin": lambda config, rng, index: RoundRobin(),
    "session": lambda config, rng, index: SessionAffinity(),
}

POLICY_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def unknown_policy_message(name: str) -> str:
    return f"Unknown routing policy {name!r}; valid policies: {', '.join(POLICY_NAMES)}."


def make_policy(
    name: str,
    config: PolicyConfig | None = None,
    rng: random.Random | None = None,
    *,
    index: PrefixIndex | None = None,
) -> Policy:
    """A fresh policy. `rng` makes power-of-two reproducible (unseeded when None); `index` lets
    several prefix policies share what they learn. Raises ValueError naming the valid policies."""
    build = _BUILDERS.get(name)
    if build is None:
        raise ValueError(unknown_policy_message(name))
    config = config if config is not None else PolicyConfig()
    return build(
        config,
        rng if rng is not None else random.Random(),
        index if index is not None else PrefixIndex.from_config(config),
    )


class PolicySet:
    """A router's policies: `default` for most requests, any other by name per request.

    Policies are built on first use and keep their state. The prefix index is shared, and every
    request teaches it where its prompt went whichever policy chose, because the backend's cache
    fills either way: a request routed round-robin by override still warms a cache that
    `prefix-cache` should know about. Until some prefix policy has been used nothing is hashed.
    """

    __slots__ = ("_config", "_default", "_index", "_learning", "_policies", "_rng")

    def __init__(
        self,
        config: PolicyConfig | None = None,
        default: str = DEFAULT_POLICY,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config if config is not None else PolicyConfig()
        self._rng = rng if rng is not None else random.Random()
        self._index = PrefixIndex.from_config(self._config)
        self._policies: dict[str, Policy] = {}
        self._learning = False
        self._default = default
        self.policy(default)

    @property
    def default(self) -> str:
        return self._default

    @property
    def index(self) -> PrefixIndex:
        return self._index

    def policy(self, name: str | None = None) -> Policy:
        """The policy called `name` (the default for None). Raises ValueError for an unknown
        name, with the valid ones: a bad per-request header is the client's error (400)."""
        key = self._default if name is None else name
        policy = self._policies.get(key)
        if policy is None:
            policy = make_policy(key, self._config, self._rng, index=self._index)
            self._policies[key] = policy
            if isinstance(policy, ScoredPolicy) and policy.learns_prefixes:
                self._learning = True
        return policy

    def choose(self, request: RoutingRequest, available: Backends, now: float) -> Decision | None:
        """Decide with the request's policy (`request.policy`, else the default)."""
        return self.policy(request.policy).choose(request, available, now)

    def record(self, request: RoutingRequest, chosen: Endpoint, now: float) -> None:
        """Call once the request is sent to `chosen` (again for the endpoint a retry goes to).

        Every policy here learns only through the shared index, so recording into it is the
        whole of learning."""
        if self._learning:
            self._index.record(self._index.block_hashes(request), chosen.name, now)

    def forget(self, name: str, now: float) -> None:
        """`name`'s engine cache is empty now (the pod was recreated, or it left the set)."""
        self._index.forget(name, now)
