"""The router's page into one target's figures. In-flight and queue depth are rendered by the
router's own registry (`phalanx.router.metrics.RouterMetrics`); the held and arrival metrics, which
the router gains in a parallel change, in its names and labels from a registry of the test's own."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from phalanx.autoscale.observe.router import (
    DEFAULT_ROUTER_NAMES,
    RouterFigures,
    RouterMetricNames,
    read_router,
)
from phalanx.autoscale.observe.snapshot import PageSnapshot
from phalanx.router.metrics import RouterMetrics

ENDPOINTS = {"demo-0": "demo-0", "demo-1": "demo-1", "demo-2-entry-a": "demo-2", "demo-2-entry-b": "demo-2"}


def router_page(
    in_flight: dict[str, float],
    queue: dict[str, float] | None = None,
    held: dict[str, float] | None = None,
    arrival_tokens: dict[str, float] | None = None,
    arrivals: dict[str, float] | None = None,
    held_name: str = "phalanx_router_held_requests",
) -> str:
    metrics = RouterMetrics()
    for endpoint, count in in_flight.items():
        metrics.in_flight.labels(endpoint).set(count)
    for priority, depth in (queue or {}).items():
        metrics.queue_depth.labels(priority).set(depth)
    extra = CollectorRegistry()
    held_gauge = Gauge(held_name, "Requests waiting with no endpoint.", ["model"], registry=extra)
    for model, count in (held or {}).items():
        held_gauge.labels(model).set(count)
    tokens = Counter("phalanx_router_arrival_prompt_tokens", "Prompt tokens.", ["model"], registry=extra)
    for model, count in (arrival_tokens or {}).items():
        tokens.labels(model).inc(count)
    requests = Counter("phalanx_router_arrivals", "Requests.", ["model"], registry=extra)
    for model, count in (arrivals or {}).items():
        requests.labels(model).inc(count)
    return (metrics.exposition() + generate_latest(extra)).decode()


def read(
    page: str,
    previous: PageSnapshot | None = None,
    now: float = 0.0,
    *,
    sole_target: bool = False,
    names: RouterMetricNames = DEFAULT_ROUTER_NAMES,
) -> RouterFigures:
    figures, _ = read_router(
        page, previous, now, model="demo", endpoints=ENDPOINTS, sole_target=sole_target, names=names
    )
    assert figures is not None
    return figures


def test_in_flight_per_unit_through_the_caller_s_mapping() -> None:
    page = router_page({"demo-0": 3, "demo-1": 0, "demo-2-entry-a": 2, "demo-2-entry-b": 1, "other-0": 9})
    # Another model's endpoint is not counted; a unit with two entries adds up.
    assert read(page).inflight == {"demo-0": 3, "demo-1": 0, "demo-2": 3}


def test_a_unit_the_router_has_not_discovered_is_absent_not_zero() -> None:
    assert read(router_page({"demo-0": 1})).inflight == {"demo-0": 1}


def test_the_slot_queue_is_unknown_when_the_router_serves_other_models_too() -> None:
    page = router_page({"demo-0": 4}, {"high": 1, "normal": 5, "low": 0})
    assert read(page) == RouterFigures(inflight={"demo-0": 4})


def test_the_slot_queue_is_the_target_s_when_the_router_serves_it_alone() -> None:
    page = router_page({"demo-0": 4}, {"high": 1, "normal": 5, "low": 0})
    assert read(page, sole_target=True).queue == 6  # every priority class


def test_held_requests_are_taken_out_of_the_queue_they_wait_in() -> None:
    page = router_page({}, {"normal": 5}, held={"demo": 3})
    figures = read(page, sole_target=True)
    assert (figures.queue, figures.held) == (2, 3)


def test_a_slot_queue_labelled_by_model_is_read_for_the_model() -> None:
    page = (
        "# TYPE phalanx_router_queue_depth gauge\n"
        'phalanx_router_queue_depth{model="demo",priority="normal"} 4\n'
        'phalanx_router_queue_depth{model="demo",priority="high"} 1\n'
        'phalanx_router_queue_depth{model="other",priority="normal"} 7\n'
    )
    assert read(page).queue == 5


def test_held_requests_by_model() -> None:
    page = router_page({}, held={"demo": 3, "other": 8})
    assert read(page).held == 3
    figures, _ = read_router(page, None, 0.0, model="absent", endpoints={})
    assert figures == RouterFigures(held=0)  # labelled by model, and none for this one


def test_the_metric_names_are_parameters() -> None:
    page = router_page({}, held={"demo": 2}, held_name="phalanx_router_admission_held")
    assert read(page).held is None  # the default name is not on this page
    assert read(page, names=RouterMetricNames(held="phalanx_router_admission_held")).held == 2


def test_arriving_prompt_tokens_per_second_over_the_window() -> None:
    first = router_page({}, arrival_tokens={"demo": 1000, "other": 5})
    figures, snapshot = read_router(first, None, 10.0, model="demo", endpoints=ENDPOINTS)
    assert figures is not None and figures.arrival_prompt_tokens_per_second is None  # no window yet
    second = router_page({}, arrival_tokens={"demo": 4000, "other": 999})
    assert read(second, snapshot, 25.0).arrival_prompt_tokens_per_second == pytest.approx(200.0)


def test_arriving_requests_per_second_over_the_same_window() -> None:
    first = router_page({}, arrival_tokens={"demo": 1000}, arrivals={"demo": 10, "other": 3})
    _, snapshot = read_router(first, None, 10.0, model="demo", endpoints=ENDPOINTS)
    second = router_page({}, arrival_tokens={"demo": 4000}, arrivals={"demo": 40, "other": 50})
    figures = read(second, snapshot, 25.0)
    assert (figures.arrivals_per_second, figures.arrival_prompt_tokens_per_second) == (2.0, 200.0)


def test_a_restarted_router_voids_the_arrival_window() -> None:
    _, snapshot = read_router(
        router_page({}, arrival_tokens={"demo": 1000}), None, 0.0, model="demo", endpoints={}
    )
    figures, restarted = read_router(
        router_page({}, arrival_tokens={"demo": 30}), snapshot, 15.0, model="demo", endpoints={}
    )
    assert figures is not None and figures.arrival_prompt_tokens_per_second is None
    assert (
        read(router_page({}, arrival_tokens={"demo": 330}), restarted, 30.0).arrival_prompt_tokens_per_second
        == 20.0
    )


def test_no_arrival_counter_for_the_model_is_unknown() -> None:
    figures, snapshot = read_router(router_page({}), None, 0.0, model="demo", endpoints={})
    assert figures is not None and snapshot is None
    assert read(router_page({}), PageSnapshot(-5.0, {}), 0.0).arrival_prompt_tokens_per_second is None


def test_negative_values_read_as_zero() -> None:
    page = 'phalanx_router_in_flight_requests{endpoint="demo-0"} -1\n'
    assert read(page) == RouterFigures(inflight={"demo-0": 0})


@pytest.mark.parametrize("page", ["<html>502</html>", 'phalanx_router_queue_depth{priority="a} 1\n'])
def test_an_unreadable_page_is_none_and_keeps_the_window_start(page: str) -> None:
    kept = PageSnapshot(3.0, {"a": 1.0})
    assert read_router(page, kept, 18.0, model="demo", endpoints=ENDPOINTS) == (None, kept)
