from __future__ import annotations

import pytest

from phalanx.router import Availability, Endpoint, availability, choose, served_models


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


def test_least_in_flight_wins() -> None:
    assert choose([A, B, C], {"a": 3, "b": 1, "c": 2}, "m") == B


def test_missing_count_means_idle() -> None:
    assert choose([A, B], {"a": 1}, "m") == B


@pytest.mark.parametrize(("cursor", "expected"), [(0, "a"), (1, "b"), (2, "c"), (3, "a"), (4, "b")])
def test_ties_round_robin_over_the_cursor(cursor: int, expected: str) -> None:
    assert choose([A, B, C], {}, "m", cursor=cursor).name == expected  # type: ignore[union-attr]


def test_ties_are_ordered_by_name_not_by_discovery_order() -> None:
    assert choose([C, A, B], {}, "m", cursor=0) == A
    assert choose([C, B, A], {}, "m", cursor=0) == A


def test_round_robin_only_among_the_least_loaded() -> None:
    loads = {"a": 0, "b": 5, "c": 0}
    picks = [choose([A, B, C], loads, "m", cursor=i) for i in range(4)]
    assert [p.name for p in picks if p] == ["a", "c", "a", "c"]


def test_same_state_same_choice() -> None:
    state = ([A, B, C], {"a": 1, "b": 1, "c": 1}, "m", frozenset[str](), 7)
    assert choose(*state) == choose(*state)


@pytest.mark.parametrize(
    "excluded_ep",
    [
        ep("a", draining=True),
        ep("a", ready=False),
        ep("a", "other"),
        Endpoint(name="a", url="http://10.0.0.9:8000", serving="demo", group_index=0),
    ],
    ids=["draining", "not-ready", "other-model", "models-unknown"],
)
def test_ineligible_endpoints_are_never_chosen(excluded_ep: Endpoint) -> None:
    # Idle, and first by name: it would win if it were eligible.
    for cursor in range(3):
        assert choose([excluded_ep, B], {"b": 10}, "m", cursor=cursor) == B


def test_excluded_names_are_skipped_for_retries() -> None:
    assert choose([A, B, C], {"a": 0, "b": 1, "c": 2}, "m", excluded={"a"}) == B
    assert choose([A, B, C], {}, "m", excluded={"a", "b"}) == C


def test_nothing_available() -> None:
    assert choose([], {}, "m") is None
    assert choose([A, B], {}, "m", excluded={"a", "b"}) is None
    assert choose([ep("a", draining=True), ep("b", ready=False)], {}, "m") is None
    assert choose([A, B], {}, "unknown") is None


def test_multi_model_endpoint() -> None:
    x = ep("x", "m1", "m2")
    y = ep("y", "m2")
    assert choose([x, y], {"x": 1}, "m2") == y
    assert choose([x, y], {"x": 1}, "m1") == x


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
