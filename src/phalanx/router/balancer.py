"""Whether a model can be routed at all, and what is served: pure functions over the endpoint set.

Which endpoint takes a request is the policies' decision (`phalanx.router.policies`). The endpoints
passed here have their `models` resolved (learned models filled in by the router); an endpoint
whose models are still unknown has `models == ()` and serves nothing yet.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from phalanx.router.declared import Declared
from phalanx.router.endpoints import Endpoint


class Availability(enum.Enum):
    ROUTABLE = "routable"
    # Declared (a ModelServing at zero, or starting; `--hold-model`) and nothing can take it now:
    # the request waits in the admission queue for an endpoint.
    HELD = "held"
    # Known (or cannot be ruled out) but nothing can take it now: 503 + Retry-After.
    UNAVAILABLE = "unavailable"
    # Every routable endpoint's models are known and none serves it: 404.
    UNKNOWN = "unknown"


def availability(endpoints: Sequence[Endpoint], model: str, declared: Declared | None = None) -> Availability:
    if any(ep.routable and model in ep.models for ep in endpoints):
        return Availability.ROUTABLE
    if declared is not None and model in declared.models:
        return Availability.HELD
    if any(model in ep.models for ep in endpoints):
        return Availability.UNAVAILABLE
    routable = [ep for ep in endpoints if ep.routable]
    # A routable endpoint whose models we could not learn may serve it: a 404 could be wrong; a
    # retryable 503 never is. With nothing routable the same holds, unless the declarations are
    # complete: every endpoint belongs to a ModelServing whose models are all known.
    if any(not ep.models for ep in routable):
        return Availability.UNAVAILABLE
    if not routable and not (declared is not None and declared.complete):
        return Availability.UNAVAILABLE
    return Availability.UNKNOWN


def served_models(endpoints: Sequence[Endpoint]) -> list[str]:
    """The models a new request can be routed to right now, sorted."""
    return sorted({m for ep in endpoints if ep.routable for m in ep.models})
