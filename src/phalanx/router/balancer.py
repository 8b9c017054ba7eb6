"""Endpoint selection: pure functions over plain data, so every rule is unit-tested without sockets.

The endpoints passed here have their `models` resolved (learned models filled in by the router);
an endpoint whose models are still unknown has `models == ()` and serves nothing yet.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence, Set

from phalanx.router.endpoints import Endpoint


def choose(
    endpoints: Sequence[Endpoint],
    in_flight: Mapping[str, int],
    model: str,
    excluded: Set[str] = frozenset(),
    cursor: int = 0,
) -> Endpoint | None:
    """Least in-flight among routable endpoints serving `model`, skipping `excluded` names.

    Ties go round-robin: candidates are ordered by name (so discovery order does not matter) and
    `cursor`, which the caller advances per decision, picks among them.
    """
    candidates = [ep for ep in endpoints if ep.routable and model in ep.models and ep.name not in excluded]
    if not candidates:
        return None
    low = min(in_flight.get(ep.name, 0) for ep in candidates)
    tied = sorted((ep for ep in candidates if in_flight.get(ep.name, 0) == low), key=lambda ep: ep.name)
    return tied[cursor % len(tied)]


class Availability(enum.Enum):
    ROUTABLE = "routable"
    # Known (or cannot be ruled out) but nothing can take it now: 503 + Retry-After.
    UNAVAILABLE = "unavailable"
    # Every routable endpoint's models are known and none serves it: 404.
    UNKNOWN = "unknown"


def availability(endpoints: Sequence[Endpoint], model: str) -> Availability:
    if any(ep.routable and model in ep.models for ep in endpoints):
        return Availability.ROUTABLE
    if any(model in ep.models for ep in endpoints):
        return Availability.UNAVAILABLE
    routable = [ep for ep in endpoints if ep.routable]
    # With nothing routable, or a routable endpoint whose models we could not learn, a 404 could
    # be wrong; a retryable 503 never is.
    if not routable or any(not ep.models for ep in routable):
        return Availability.UNAVAILABLE
    return Availability.UNKNOWN


def served_models(endpoints: Sequence[Endpoint]) -> list[str]:
    """The models a new request can be routed to right now, sorted."""
    return sorted({m for ep in endpoints if ep.routable for m in ep.models})
