from __future__ import annotations

import math

import pytest

from phalanx.router.policies import candidates
from phalanx.router.policies.state import kv_usages, loads
from tests.unit.router.policies.helpers import backend


def names(states: list) -> list[str]:  # type: ignore[type-arg]
    return [s.endpoint.name for s in states]


def test_filter_keeps_routable_backends_of_the_model() -> None:
    states = [
        backend("ok"),
        backend("draining", draining=True),
        backend("not-ready", ready=False),
        backend("other-model", models=("x",)),
        backend("models-unknown", models=()),
        backend("tried"),
        backend("also-ok", 3),
    ]
    found = candidates(states, "m", excluded={"tried"})
    assert names(found.available) == ["ok", "also-ok"]
    assert found.saturated == []
    assert found.ejected == []


def test_backends_at_capacity_are_reported_for_queueing_not_picked() -> None:
    found = candidates([backend("full", at_capacity=True), backend("free")], "m")
    assert names(found.available) == ["free"]
    assert names(found.saturated) == ["full"]


def test_ejected_backends_are_reported_apart() -> None:
    found = candidates(
        [backend("sick", healthy=False), backend("sick-and-full", healthy=False, at_capacity=True)], "m"
    )
    assert found.available == []
    assert found.saturated == []
    assert names(found.ejected) == ["sick", "sick-and-full"]


def test_excluded_or_unroutable_backends_are_not_reported_at_all() -> None:
    found = candidates(
        [backend("a", at_capacity=True), backend("b", healthy=False, draining=True)], "m", {"a"}
    )
    assert (found.available, found.saturated, found.ejected) == ([], [], [])


def test_multi_model_backend_serves_each_of_its_models() -> None:
    both = backend("both", models=("m", "n"))
    assert names(candidates([both], "n").available) == ["both"]


def test_load_is_in_flight_plus_waiting() -> None:
    assert loads([backend("a", 3, waiting=2.0), backend("b", 1, waiting=0.0)]) == [5.0, 1.0]


def test_load_without_engine_metrics_is_in_flight() -> None:
    assert loads([backend("a", 3), backend("b", 1)]) == [3, 1]


@pytest.mark.parametrize("unknown", [None, math.nan, -1.0, math.inf])
def test_unknown_waiting_counts_as_the_mean_of_the_known(unknown: float | None) -> None:
    states = [
        backend("a", 0, waiting=2.0),
        backend("b", 0, waiting=4.0),
        backend("stale", 0, waiting=unknown),
    ]
    assert loads(states) == [2.0, 4.0, 3.0]


def test_kv_usage_is_clamped_and_imputed() -> None:
    assert kv_usages([backend("a", kv=0.2), backend("b", kv=1.7), backend("c")]) == pytest.approx(
        [0.2, 1.0, 0.6]
    )


def test_kv_usage_unknown_everywhere_is_equal_everywhere() -> None:
    assert kv_usages([backend("a"), backend("b")]) == [0.0, 0.0]
