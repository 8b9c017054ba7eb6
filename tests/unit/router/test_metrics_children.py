"""RouterMetrics.child: labelled children remembered, and forgotten with their endpoint's series."""

from __future__ import annotations

from phalanx.router.metrics import RouterMetrics


def series(metrics: RouterMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    }


def test_child_is_the_labelled_series_and_is_remembered() -> None:
    metrics = RouterMetrics()
    first = metrics.child(metrics.requests, "m", "ep-0", "200")
    assert metrics.child(metrics.requests, "m", "ep-0", "200") is first
    first.inc()
    metrics.child(metrics.requests, "m", "ep-1", "200").inc(2)
    metrics.requests.labels("m", "ep-0", "200").inc()  # the same series either way
    got = series(metrics, "phalanx_router_requests_total")
    assert got[(("code", "200"), ("endpoint", "ep-0"), ("model", "m"))] == 2
    assert got[(("code", "200"), ("endpoint", "ep-1"), ("model", "m"))] == 2


def test_a_forgotten_endpoint_gets_a_fresh_in_flight_series() -> None:
    metrics = RouterMetrics()
    metrics.child(metrics.in_flight, "ep-0").set(3)
    metrics.forget_endpoint("ep-0")
    assert series(metrics, "phalanx_router_in_flight_requests") == {}
    # A pod back under the same name reports again, from its own count.
    metrics.child(metrics.in_flight, "ep-0").set(1)
    assert series(metrics, "phalanx_router_in_flight_requests") == {(("endpoint", "ep-0"),): 1}


def test_a_known_endpoint_exports_its_ejection_counters_at_zero() -> None:
    # The crash-loop alert takes increase() over the ejections: a counter that first appears at
    # its first ejection would not count that one.
    metrics = RouterMetrics()
    metrics.know_endpoint("ep-0")
    assert series(metrics, "phalanx_router_health_events_total") == {
        (("endpoint", "ep-0"), ("event", "ejected"), ("source", "passive")): 0,
        (("endpoint", "ep-0"), ("event", "ejected"), ("source", "active")): 0,
    }
