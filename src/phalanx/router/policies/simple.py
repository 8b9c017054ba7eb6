"""Policies that need no prompt: round-robin, least-in-flight, power-of-two, session affinity."""

from __future__ import annotations

import random

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies.base import Decision, Rendezvous, Rotation, least_loaded
from phalanx.router.policies.request import RoutingRequest
from phalanx.router.policies.state import Backends, loads


class _Unlearned:
    """A policy that learns nothing from where requests went; its only state is its turn."""

    __slots__ = ("_rotation",)

    def __init__(self) -> None:
        self._rotation = Rotation()

    def record(self, request: RoutingRequest, chosen: Endpoint, now: float) -> None:
        """Nothing to learn."""


class RoundRobin(_Unlearned):
    """Each candidate in turn, by name; a changing set does not restart the turn."""

    __slots__ = ()
    name = "round-robin"

    def choose(self, request: RoutingRequest, available: Backends, now: float) -> Decision | None:
        if not available:
            return None
        return Decision(self._rotation.pick(available).endpoint, self.name, "rotation")


class LeastInFlight(_Unlearned):
    """Fewest requests in flight through this router (never stale); ties round-robin by name,
    as `balancer.choose`. Blind to load that reaches the engine another way."""

    __slots__ = ()
    name = "least-in-flight"

    def choose(self, request: RoutingRequest, available: Backends, now: float) -> Decision | None:
        if not available:
            return None
        chosen = least_loaded(available, [s.in_flight for s in available], self._rotation)
        return Decision(chosen.endpoint, self.name, "least-loaded")


class PowerOfTwo(_Unlearned):
    """Two distinct random candidates; the one with fewer requests (in flight plus the engine's
    waiting queue when known) wins, the first drawn on a tie. O(1) draws from the injected RNG."""

    __slots__ = ("_rng",)
    name = "power-of-two"

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def choose(self, request: RoutingRequest, available: Backends, now: float) -> Decision | None:
        n = len(available)
        if n == 0:
            return None
        if n == 1:
            return Decision(available[0].endpoint, self.name, "only-choice")
        i = self._rng.randrange(n)
        j = self._rng.randrange(n - 1)
        if j >= i:
            j += 1
        # Imputing unknown waiting counts needs every candidate's figure, not just the two drawn.
        load = loads(available)
        chosen = available[j] if load[j] < load[i] else available[i]
        return Decision(chosen.endpoint, self.name, "sampled")


class SessionAffinity(_Unlearned):
    """A session's requests go to the backend it hashes to (rendezvous hashing over the
    available names), so its engine's cache keeps the conversation. When that backend leaves
    the set (draining, at capacity, excluded after a failure) the session moves to its
    second-ranked backend, and only its sessions move. No session: least-in-flight."""

    __slots__ = ("_rendezvous",)
    name = "session"

    def __init__(self) -> None:
        super().__init__()
        self._rendezvous = Rendezvous()

    def choose(self, request: RoutingRequest, available: Backends, now: float) -> Decision | None:
        if not available:
            return None
        if request.session is None:
            chosen = least_loaded(available, [s.in_flight for s in available], self._rotation)
            return Decision(chosen.endpoint, self.name, "fallback")
        return Decision(self._rendezvous.pick(request.session, available).endpoint, self.name, "session")
