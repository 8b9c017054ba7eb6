"""Backends and requests for the policy tests, built from as little as each test cares about."""

from __future__ import annotations

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies import BackendState, RoutingRequest

BLOCK = 128


def endpoint(
    name: str, models: tuple[str, ...] = ("m",), *, ready: bool = True, draining: bool = False
) -> Endpoint:
    return Endpoint(
        name=name,
        url="http://10.0.0.1:8000",
        serving="demo",
        group_index=0,
        models=models,
        ready=ready,
        draining=draining,
    )


def backend(
    name: str,
    in_flight: int = 0,
    *,
    waiting: float | None = None,
    kv: float | None = None,
    models: tuple[str, ...] = ("m",),
    ready: bool = True,
    draining: bool = False,
    healthy: bool = True,
    at_capacity: bool = False,
) -> BackendState:
    return BackendState(
        endpoint=endpoint(name, models, ready=ready, draining=draining),
        in_flight=in_flight,
        waiting=waiting,
        kv_cache_usage=kv,
        healthy=healthy,
        at_capacity=at_capacity,
    )


def blocks(*letters: str) -> str:
    """Prompt text of whole blocks, one letter repeated per block: blocks("a", "b") is 256 chars."""
    return "".join(letter * BLOCK for letter in letters)


def request(text: str = "", *, session: str | None = None, model: str = "m") -> RoutingRequest:
    return RoutingRequest(model=model, prefix_text=text, session=session)
