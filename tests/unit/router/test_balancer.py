from __future__ import annotations

import pytest

from phalanx.router import Availability, Endpoint, availability, served_models
from phalanx.router.declared import Declared


def ep(name: str, *models: str, ready: bool = True, draining: bool = False) -> Endpoint:
    return Endpoint(
        name=name,
        url=f"http://10.0.0.{len(name)}:8000",
        serving="demo",
        group_index=0,
        models=models or ("m",),
        ready=ready,
        draining=draining,
    )


A, B, C = ep("a"), ep("b"), ep("c")


def test_availability() -> None:
    assert availability([A], "m") is Availability.ROUTABLE
    assert availability([A], "nope") is Availability.UNKNOWN
    # Known but no routable endpoint serves it.
    assert availability([ep("a", draining=True), B], "x") is Availability.UNKNOWN
    assert availability([ep("a", "x", draining=True), B], "x") is Availability.UNAVAILABLE
    assert availability([ep("a", "x", ready=False)], "x") is Availability.UNAVAILABLE
    # No endpoint at all, or one whose models are not learned yet: cannot rule the model out.
    assert availability([], "x") is Availability.UNAVAILABLE
    unknown = Endpoint(name="u", url="http://10.0.0.1:8000", serving="demo", group_index=0)
    assert availability([unknown, B], "x") is Availability.UNAVAILABLE


def test_a_declared_model_with_nothing_routable_is_held() -> None:
    declared = Declared(frozenset({"x"}))
    # Scaled to zero, or the first group starting, or its only endpoints draining.
    assert availability([], "x", declared) is Availability.HELD
    assert availability([ep("a", "x", ready=False)], "x", declared) is Availability.HELD
    assert availability([ep("a", "x", draining=True), B], "x", declared) is Availability.HELD
    assert availability([ep("a", "x"), ep("b", "x", ready=False)], "x", declared) is Availability.ROUTABLE
    # Declaring one model does not hold another.
    assert availability([], "y", declared) is Availability.UNAVAILABLE
    assert availability([B], "y", declared) is Availability.UNKNOWN


def test_complete_declarations_make_an_unknown_model_404_even_with_no_endpoint() -> None:
    complete = Declared(frozenset({"x"}), complete=True)
    assert availability([], "typo", complete) is Availability.UNKNOWN
    assert availability([ep("a", "x", ready=False)], "typo", complete) is Availability.UNKNOWN
    # A routable endpoint whose models are not learned yet may still serve it.
    unknown = Endpoint(name="u", url="http://10.0.0.1:8000", serving="demo", group_index=0)
    assert availability([unknown], "typo", complete) is Availability.UNAVAILABLE
    # Not complete: with nothing routable a 404 could be wrong.
    assert availability([], "typo", Declared(frozenset({"x"}))) is Availability.UNAVAILABLE


def test_served_models_are_the_routable_union() -> None:
    eps = [ep("a", "m2", "m1"), ep("b", "m3", draining=True), ep("c", "m4", ready=False), ep("d", "m1")]
    assert served_models(eps) == ["m1", "m2"]


def test_endpoint_validation() -> None:
    e = Endpoint(name="e", url="http://10.0.0.1:8000/", serving="s", group_index=1, models=("m",))
    assert e.url == "http://10.0.0.1:8000"
    assert e.routable
    with pytest.raises(ValueError, match="url"):
        Endpoint(name="e", url="10.0.0.1:8000", serving="s", group_index=0)
    with pytest.raises(ValueError, match="name"):
        Endpoint(name="", url="http://10.0.0.1:8000", serving="s", group_index=0)
