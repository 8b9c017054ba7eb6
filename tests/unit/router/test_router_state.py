from __future__ import annotations

import pytest

from phalanx.router import Endpoint, Router, RouterConfig
from phalanx.router.declared import Declared


def ep(name: str, **kw: object) -> Endpoint:
    return Endpoint(name=name, url=f"http://10.0.0.1:{8000 + len(name)}", serving="s", group_index=0, **kw)  # type: ignore[arg-type]


def test_in_flight_tracks_the_current_set() -> None:
    router = Router()
    router.set_endpoints([ep("a", models=("m",)), ep("b")])
    assert router.in_flight() == {"a": 0, "b": 0}
    router.set_endpoints([ep("b")])
    assert router.in_flight() == {"b": 0}
    # Idempotent.
    router.set_endpoints([ep("b")])
    assert router.in_flight() == {"b": 0}


def test_endpoints_without_models_serve_nothing_until_learned() -> None:
    router = Router()
    router.set_endpoints([ep("a"), ep("b", models=("m",))])
    assert [e.models for e in router.endpoints()] == [(), ("m",)]


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Router().set_endpoints([ep("a"), ep("a")])


def test_config_validation_and_url_before_start() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RouterConfig(max_attempts=0)
    with pytest.raises(ValueError, match="hold_models"):
        RouterConfig(hold_models=("m", ""))
    with pytest.raises(RuntimeError, match="not started"):
        _ = Router().url


def test_hold_models_stay_declared_whatever_discovery_says() -> None:
    router = Router(RouterConfig(hold_models=("held",)))
    assert router.declared == Declared(frozenset({"held"}))
    router.set_declared(Declared(frozenset({"served"}), complete=True))
    assert router.declared == Declared(frozenset({"held", "served"}), complete=True)
    router.set_declared(Declared())
    assert router.declared == Declared(frozenset({"held"}))
