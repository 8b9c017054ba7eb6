"""The router's page into one target's figures. Pages are rendered by the router's own registry
(`phalanx.router.metrics.RouterMetrics`), so the names and labels are the real ones."""

from __future__ import annotations

import pytest
from prometheus_client import Gauge

from phalanx.autoscale.observe.router import HELD, RouterFigures, read_router
from phalanx.router.metrics import RouterMetrics

ENDPOINTS = {"demo-0": "demo-0", "demo-1": "demo-1", "demo-2-entry-a": "demo-2", "demo-2-entry-b": "demo-2"}


def router_page(
    in_flight: dict[str, float], queue: dict[str, float] | None = None
) -> tuple[RouterMetrics, str]:
    metrics = RouterMetrics()
    for endpoint, count in in_flight.items():
        metrics.in_flight.labels(endpoint).set(count)
    for priority, depth in (queue or {}).items():
        metrics.queue_depth.labels(priority).set(depth)
    return metrics, metrics.exposition().decode()


def with_held(metrics: RouterMetrics, held: dict[str, float], name: str = HELD) -> str:
    gauge = Gauge(name, "Requests held with no endpoint, by model.", ["model"], registry=metrics.registry)
    for model, count in held.items():
        gauge.labels(model).set(count)
    return metrics.exposition().decode()


def test_in_flight_per_unit_through_the_caller_s_mapping() -> None:
    _, page = router_page({"demo-0": 3, "demo-1": 0, "demo-2-entry-a": 2, "demo-2-entry-b": 1, "other-0": 9})
    figures = read_router(page, model="demo", endpoints=ENDPOINTS)
    assert figures is not None
    # Another model's endpoint is not counted; a unit with two entries adds up.
    assert figures.inflight == {"demo-0": 3, "demo-1": 0, "demo-2": 3}


def test_a_unit_the_router_has_not_discovered_is_absent_not_zero() -> None:
    _, page = router_page({"demo-0": 1})
    figures = read_router(page, model="demo", endpoints=ENDPOINTS)
    assert figures is not None and figures.inflight == {"demo-0": 1}


def test_the_slot_queue_is_unknown_when_the_router_serves_other_models_too() -> None:
    _, page = router_page({"demo-0": 4}, {"high": 1, "normal": 5, "low": 0})
    assert read_router(page, model="demo", endpoints=ENDPOINTS) == RouterFigures(inflight={"demo-0": 4})


def test_the_slot_queue_is_the_target_s_when_the_router_serves_it_alone() -> None:
    _, page = router_page({"demo-0": 4}, {"high": 1, "normal": 5, "low": 0})
    figures = read_router(page, model="demo", endpoints=ENDPOINTS, sole_target=True)
    assert figures is not None and figures.queue == 6  # every priority class


def test_a_slot_queue_labelled_by_model_is_read_for_the_model() -> None:
    page = (
        "# TYPE phalanx_router_queue_depth gauge\n"
        'phalanx_router_queue_depth{model="demo",priority="normal"} 4\n'
        'phalanx_router_queue_depth{model="demo",priority="high"} 1\n'
        'phalanx_router_queue_depth{model="other",priority="normal"} 7\n'
    )
    figures = read_router(page, model="demo", endpoints=ENDPOINTS)
    assert figures is not None and figures.queue == 5


def test_held_requests_by_model() -> None:
    metrics, _ = router_page({})
    page = with_held(metrics, {"demo": 3, "other": 8})
    figures = read_router(page, model="demo", endpoints=ENDPOINTS)
    assert figures is not None and figures.held == 3 and figures.inflight == {}
    assert read_router(page, model="absent", endpoints={}) == RouterFigures(held=0)


def test_the_held_metric_s_name_is_a_parameter() -> None:
    metrics, _ = router_page({})
    page = with_held(metrics, {"demo": 2}, name="phalanx_router_admission_held")
    assert read_router(page, model="demo", endpoints=ENDPOINTS) == RouterFigures()  # default name absent
    figures = read_router(
        page, model="demo", endpoints=ENDPOINTS, held_metric="phalanx_router_admission_held"
    )
    assert figures is not None and figures.held == 2


def test_negative_values_read_as_zero() -> None:
    page = 'phalanx_router_in_flight_requests{endpoint="demo-0"} -1\n'
    assert read_router(page, model="demo", endpoints=ENDPOINTS) == RouterFigures(inflight={"demo-0": 0})


@pytest.mark.parametrize("page", ["<html>502</html>", 'phalanx_router_queue_depth{priority="a} 1\n'])
def test_an_unreadable_page_is_none(page: str) -> None:
    assert read_router(page, model="demo", endpoints=ENDPOINTS) is None
