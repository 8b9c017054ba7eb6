"""The windows keep what the demand needs, not a backlog's drain: a drain is done once, and its
units must not be held for a whole scale-down window after the backlog is gone."""

from __future__ import annotations

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import History, MetricTarget, Recommendation, Signals, StepLimit, UnitSignals
from tests.unit.autoscale.core_builders import policy, run, units

INFLIGHT = MetricTarget("inflight", 5.0)
TTFT = MetricTarget("ttft_p95", 2.0)
KNOWN = History(capacity_per_unit=2000.0)
HELD = StepLimit(instances=1000, period=0.0, stabilization_window=300.0)


def demand(*unit_signals: UnitSignals) -> Signals:
    """6000 tokens/s in 4 requests/s: 3 units of 2000 tokens/s at full use."""
    return Signals(units=unit_signals, demand_tokens_per_second=6000.0, demand_requests_per_second=4.0)


def test_a_figure_the_drain_capped_is_kept_at_what_the_demand_needs() -> None:
    # 2 units with 30 waiting each ask 16 through the ratio rule; the drain need caps it at 4,
    # one more than the 3 the demand needs. The pass asks for 4; the windows keep 3.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    decision = autoscale(chosen, demand(*units(2, inflight=40.0, waiting=30.0)), 0.0, KNOWN)
    assert (decision.recommendations, decision.desired) == ({"inflight": 4}, 4)
    assert decision.history.recommendations == (Recommendation(0.0, 3),)


def test_a_stale_latency_guard_capped_at_the_count_is_kept_at_the_demands_need() -> None:
    # p95 5 s with nothing waiting: the guard's 5 is capped at the current 4, and kept at 3.
    chosen = policy(INFLIGHT, TTFT, capacity_utilization=1.0)
    decision = autoscale(chosen, demand(*units(4, inflight=2.0, waiting=0.0, ttft_p95=5.0)), 0.0, KNOWN)
    assert decision.recommendations == {"inflight": 2, "ttft_p95": 4, "capacity": 3}
    assert decision.desired == 4
    assert decision.history.recommendations == (Recommendation(0.0, 3),)


def test_figures_nothing_capped_are_kept_as_they_are() -> None:
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    # 4 units at their target of 5 in flight keep 4: not above the count, nothing caps them.
    busy = autoscale(chosen, demand(*units(4, inflight=5.0, waiting=0.0)), 0.0, KNOWN)
    assert busy.history.recommendations == (Recommendation(0.0, 4),)
    # Without a capacity the drain need is unknown: the ratio rule's 16 stands and is kept.
    unknown = autoscale(chosen, demand(*units(2, inflight=40.0, waiting=30.0)), 0.0, History())
    assert (unknown.desired, unknown.history.recommendations) == (16, (Recommendation(0.0, 16),))


def test_after_a_drain_the_scale_down_window_lets_the_count_fall_to_the_demand() -> None:
    # A drain asks for 4; a minute later nothing waits and the demand needs 3: the 300 s window
    # holds what the demand needed (3), not the drain's 4.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, scale_down=HELD)
    passes = [
        (0.0, demand(*units(2, inflight=40.0, waiting=30.0))),
        (60.0, demand(*units(4, inflight=3.0, waiting=0.0))),
    ]
    first, after = run(chosen, passes, KNOWN)
    assert (first.desired, after.desired) == (4, 3)
    assert "held" not in after.reason


def test_a_demand_that_needed_the_units_still_holds_them_for_the_window() -> None:
    # Four units the demand itself needed (8000 tokens/s) are held by the window when it falls.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, scale_down=HELD)
    high = Signals(
        units=units(4, inflight=4.0), demand_tokens_per_second=8000.0, demand_requests_per_second=4.0
    )
    passes = [(0.0, high), (60.0, demand(*units(4, inflight=3.0, waiting=0.0)))]
    first, after = run(chosen, passes, KNOWN)
    assert (first.desired, after.desired) == (4, 4)
    assert "held at 4 by the scale-down window (highest recommendation in the last 300 s: 4)" in after.reason
