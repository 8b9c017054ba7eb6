"""Pending metric updates: applied when the registry is read, to the same series with the same values
as prometheus_client's own calls would give."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.router.metrics import RouterMetrics

# Latencies around and on the bucket bounds, and the odd values a clock difference cannot give.
SECONDS = st.floats(min_value=0, max_value=4000, allow_nan=False) | st.sampled_from(
    [0.0, 0.005, 0.01, 2.5, 1800.0, math.inf, math.nan]
)


def samples(metrics: RouterMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample but the `_created` timestamps (when a series was first labelled)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def same(
    a: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    b: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


@given(
    st.lists(SECONDS, max_size=30),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=10),
    st.lists(st.integers(min_value=0, max_value=64), max_size=5),
)
def test_pending_updates_read_as_the_series_own_calls(
    seconds: list[float], tokens: list[int], gauges: list[int]
) -> None:
    pending, direct = RouterMetrics(), RouterMetrics()
    # The relay's three series exist (at 0) on both sides once looked up.
    pending.relay_series("m", "ep-0")
    direct.ttfb.labels("m")
    direct.ttft.labels("m", "ep-0")
    direct.itl.labels("m", "ep-0")
    for value in seconds:
        pending.histogram(pending.latency, "m", "ep-0").observe(value)
        direct.latency.labels("m", "ep-0").observe(value)
        pending.relay_series("m", "ep-0")[2].observe(value)
        direct.itl.labels("m", "ep-0").observe(value)
    for count in tokens:
        pending.counter(pending.arrival_prompt_tokens, "m").inc(count)
        direct.arrival_prompt_tokens.labels("m").inc(count)
        pending.counter(pending.requests, "m", "ep-0", "200").inc()
        direct.requests.labels("m", "ep-0", "200").inc()
    for count in gauges:
        pending.gauge(pending.in_flight, "ep-0").set(count)
        direct.in_flight.labels("ep-0").set(count)
    assert same(samples(pending), samples(direct))
    assert same(samples(pending), samples(direct))  # a second read adds nothing again


def test_each_read_applies_what_came_since_the_last() -> None:
    metrics = RouterMetrics()
    series = metrics.counter(metrics.requests, "m", "ep-0", "200")
    assert metrics.counter(metrics.requests, "m", "ep-0", "200") is series
    series.inc()
    labels = {"model": "m", "endpoint": "ep-0", "code": "200"}
    assert metrics.registry.get_sample_value("phalanx_router_requests_total", labels) == 1
    series.inc(2)
    metrics.requests.labels("m", "ep-0", "200").inc()  # a direct update adds to the same series
    assert metrics.registry.get_sample_value("phalanx_router_requests_total", labels) == 4
    assert b'phalanx_router_requests_total{code="200",endpoint="ep-0",model="m"} 4.0' in metrics.exposition()


def test_a_counter_refuses_a_negative_amount_when_given() -> None:
    metrics = RouterMetrics()
    with pytest.raises(ValueError, match="non-negative"):
        metrics.counter(metrics.arrivals, "m").inc(-1)


def test_a_forgotten_endpoint_loses_its_pending_gauge() -> None:
    metrics = RouterMetrics()
    metrics.gauge(metrics.in_flight, "ep-0").set(3)
    metrics.forget_endpoint("ep-0")
    assert (
        metrics.registry.get_sample_value("phalanx_router_in_flight_requests", {"endpoint": "ep-0"}) is None
    )
    metrics.gauge(metrics.in_flight, "ep-0").set(1)  # back under the same name: a fresh series
    assert metrics.registry.get_sample_value("phalanx_router_in_flight_requests", {"endpoint": "ep-0"}) == 1
