"""The demand forecast over a unit's startup: a rise that lasts is extrapolated, a step seen
through the rate window is not; the capacity floor plans for the forecast; a capacity prior
stands in until a capacity is learned."""

from __future__ import annotations

import dataclasses

import pytest

from phalanx.autoscale.backlog import accelerating, lead_time, rise, sustained
from phalanx.autoscale.capacity import capacity_figure
from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import History, MetricTarget
from tests.unit.autoscale.core_builders import pending, policy, units
from tests.unit.autoscale.test_core_backlog import demand  # 6000 tokens/s in 4 requests/s

INFLIGHT = MetricTarget("inflight", 5.0)
QUEUE = MetricTarget("queue", 4.0)
# The arrival rate rose by 1 request/s in each of the last three minutes: 1, 2, 3, then 4 now.
RISING = ((0.0, 1.0), (60.0, 2.0), (120.0, 3.0))


def test_a_rise_over_three_spans_is_a_trend_at_its_slowest_pace() -> None:
    # Gains 4-3, 3-2, 2-1: 1 per 60 s each, so 1/60 request/s per second.
    assert sustained(RISING, 180.0, 4.0) == pytest.approx(1 / 60)
    # Gains 5-3, 3-2, 2-1: the slowest, 1 per 60 s, is the pace.
    assert sustained(RISING, 180.0, 5.0) == pytest.approx(1 / 60)


def test_an_accelerating_rise_is_paced_at_the_gain_its_older_spans_predict() -> None:
    # Rates 1, 2, 4, then 7: gains 1, 2, 3 (oldest first). The older two predict 2 + (2 - 1) = 3
    # for the newest, which gained 3: 3 per 60 s, not the slowest span's 1.
    accelerating = ((0.0, 1.0), (60.0, 2.0), (120.0, 4.0))
    assert sustained(accelerating, 180.0, 7.0) == pytest.approx(3 / 60)
    # The newest gained 2.5, less than the 3 predicted: the newest's pace.
    assert sustained(accelerating, 180.0, 6.5) == pytest.approx(2.5 / 60)
    # Gains 1, 2, 1.5: no longer accelerating, the slowest pace.
    assert sustained(accelerating, 180.0, 5.5) == pytest.approx(1 / 60)


def test_a_step_after_noise_keeps_the_slowest_pace() -> None:
    # 3 requests/s with noise (+0.1), then a step whose window ramp lifts the last two spans by
    # 2.25 and 6.75: every span rose and each more than the one before, but the oldest rose from
    # nothing (0.1 x 3 < 2.25): no acceleration, the slowest pace, 0.1 per 60 s.
    noisy_step = ((0.0, 3.0), (60.0, 3.1), (120.0, 5.35))
    assert sustained(noisy_step, 180.0, 12.1) == pytest.approx(0.1 / 60)


def test_no_trend_when_a_span_did_not_rise_or_is_not_known() -> None:
    assert sustained(RISING, 180.0, 3.0) == 0.0  # flat in the last minute
    assert sustained(((0.0, 2.0), (60.0, 2.0), (120.0, 3.0)), 180.0, 4.0) == 0.0  # flat in the first
    assert sustained(RISING[1:], 180.0, 4.0) == 0.0  # no rate three minutes old


def test_a_step_seen_through_the_rate_window_is_not_a_trend() -> None:
    # 3 requests/s, then 12 from 300 s: a 60 s window reads a ramp from 300 to 360 s. At 390 s the
    # spans gained 12-7.5, 7.5-3 and 3-3: the oldest did not rise.
    samples = ((210.0, 3.0), (270.0, 3.0), (330.0, 7.5))
    assert sustained(samples, 390.0, 12.0) == 0.0
    # The rise stays the one-span rule's: 4.5 gained since 330 s, never more than that.
    assert rise(samples, 390.0, 12.0, 150.0) == pytest.approx(4.5)


def test_an_accelerating_trend_beyond_the_noise_keeps_its_acceleration() -> None:
    # Rates 2, 5, 10, then 17: gains 3, 5, 7 (oldest first), each 2 more than the one before.
    # Over 150 s (2.5 spans) the gain per span goes on growing by 2: 7 x 2.5 + 2 x 2.5^2 / 2 =
    # 23.75, where the constant pace of the newest span gives 17.5. The oldest gain, 3, is beyond
    # 3 x sqrt(2 x 17 / 60) = 2.26, the noise of two 60 s rates at 17 requests/s.
    faster = ((0.0, 2.0), (60.0, 5.0), (120.0, 10.0))
    assert sustained(faster, 180.0, 17.0) * 150.0 == pytest.approx(17.5)
    assert accelerating(faster, 180.0, 17.0, 150.0) == pytest.approx(23.75)
    assert rise(faster, 180.0, 17.0, 150.0) == pytest.approx(23.75)


def test_an_acceleration_within_the_noise_is_not_extrapolated() -> None:
    # Gains 0.3, 0.5, 0.7 at 1.7 requests/s: the noise is 3 x sqrt(3.4 / 60) = 0.71, above the
    # oldest gain: the trend keeps its constant pace, 0.7 per 60 s.
    slow = ((0.0, 0.2), (60.0, 0.5), (120.0, 1.0))
    assert accelerating(slow, 180.0, 1.7, 150.0) == 0.0
    assert rise(slow, 180.0, 1.7, 150.0) == pytest.approx(1.75)


def test_a_step_after_noise_is_not_accelerating() -> None:
    noisy_step = ((0.0, 3.0), (60.0, 3.1), (120.0, 5.35))
    assert accelerating(noisy_step, 180.0, 12.1, 150.0) == 0.0
    assert accelerating(RISING[1:], 180.0, 4.0, 150.0) == 0.0  # no rate three minutes old


def test_a_trend_is_extrapolated_over_the_whole_startup() -> None:
    # The one-span rule would stop at what the last minute gained (1); the trend's 1/60 per
    # second over a 150 s startup is 2.5.
    assert rise(RISING, 180.0, 4.0, 150.0) == pytest.approx(2.5)
    assert rise(RISING, 180.0, 4.0, 30.0) == pytest.approx(0.5)  # within a minute: the same pace


def test_the_floor_plans_for_the_demand_expected_when_a_new_unit_is_ready() -> None:
    figure = capacity_figure(6000.0, 2000.0, 2, 0.1, "group", 1.0, expected=9000.0)
    assert figure is not None
    assert figure.replicas == 5  # 9000 / 2000 = 4.5, not 6000 / 2000 = 3
    assert figure.text == (
        "demand 6000 tokens/s, rising to 9000 by the time a new group is ready, at the learned "
        "2000 tokens/s per group asks for 5"
    )
    falling = capacity_figure(6000.0, 2000.0, 2, 0.1, "group", 1.0, expected=5000.0)
    assert falling is not None and falling.replicas == 3  # a lower forecast is the windows' business


def test_the_core_asks_a_startup_ahead_for_a_lasting_rise() -> None:
    # 4 requests/s rising 1/60 per second, learned startup 150 s: 2.5 more, 6.5 requests/s at
    # 1500 tokens is 9750 tokens/s, 4.875 units of 2000: 5 (today's demand alone asks for 3).
    chosen = policy(INFLIGHT, capacity_utilization=1.0)
    history = History(capacity_per_unit=2000.0, startup=150.0, demand=RISING)
    decision = autoscale(chosen, demand(*units(2, inflight=2.0, waiting=0.0)), 180.0, history)
    assert decision.recommendations == {"inflight": 1, "capacity": 5}
    assert decision.desired == 5


def test_the_prior_stands_in_until_a_capacity_is_learned() -> None:
    # 6000 tokens/s at the prior's 2000 per unit: 3; the prior is not written as learned.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_prior=2000.0)
    signals = demand(*units(2, inflight=2.0, waiting=0.0))
    decision = autoscale(chosen, signals, 0.0, History())
    assert decision.recommendations == {"inflight": 1, "capacity": 3}
    assert "the expected (the policy's prior) 2000 tokens/s per group" in decision.reason
    assert decision.history.capacity_per_unit is None
    # A learned capacity wins: 6000 / 3000 = 2.
    learned = autoscale(chosen, signals, 0.0, History(capacity_per_unit=3000.0))
    assert learned.recommendations == {"inflight": 1, "capacity": 2}
    # Without a prior nothing is assumed: no floor.
    unknown = autoscale(policy(INFLIGHT, capacity_utilization=1.0), signals, 0.0, History())
    assert unknown.recommendations == {"inflight": 1}


def test_the_first_start_from_zero_asks_for_what_the_prior_drains() -> None:
    # 100 requests in the admission queue at target 4 asks for 25. At the prior's 2000 tokens/s a
    # unit completes 2000 x 4 / 6000 = 4/3 requests/s: the demand needs 3 and 100 requests
    # 100 / (4/3 x 120) = 0.625 more: 4.
    chosen = policy(QUEUE, capacity_utilization=1.0, capacity_prior=2000.0, capacity_floor=False)
    decision = autoscale(chosen, demand(admission_queue=100), 0.0, History())
    assert decision.recommendations["queue"] == 4
    assert decision.desired == 4
    blind = autoscale(policy(QUEUE, capacity_floor=False), demand(admission_queue=100), 0.0, History())
    assert blind.recommendations["queue"] == 25  # capped at the policy's maximum of 20


def test_the_lead_is_the_learned_startup_else_what_a_starting_unit_already_took() -> None:
    starting = (*units(1), *pending(1, since=30.0), *pending(1, since=90.0, start=200))
    assert lead_time(150.0, starting, 120.0) == 150.0
    assert lead_time(None, starting, 120.0) == 90.0  # the unit pending since 30 s took at least 90
    assert lead_time(None, units(2), 120.0) == 0.0  # nothing starting, nothing learned


def test_before_a_startup_is_learned_the_platform_reported_startup_is_the_lead() -> None:
    starting = (*units(1), *pending(1, since=90.0))
    assert lead_time(None, units(2), 120.0, known=150.0) == 150.0  # nothing starting: the reported one
    assert lead_time(None, starting, 120.0, known=20.0) == 30.0  # a unit already waited longer
    assert lead_time(140.0, starting, 120.0, known=150.0) == 140.0  # a learned startup wins


def test_the_first_rise_is_forecast_over_the_startup_the_ready_units_took() -> None:
    # Nothing learned, nothing starting: the ready units took 150 s from creation to ready, so
    # the trend's 1/60 per second over 150 s is 2.5 more, 6.5 requests/s at 1500 tokens is 9750
    # tokens/s, 4.875 units of 2000: 5. Without the reported startup the lead is 0: 3.
    chosen = policy(INFLIGHT, capacity_utilization=1.0)
    history = History(capacity_per_unit=2000.0, demand=RISING)
    signals = demand(*units(2, inflight=2.0, waiting=0.0))
    reported = dataclasses.replace(signals, startup_seconds=150.0)
    assert autoscale(chosen, reported, 180.0, history).recommendations["capacity"] == 5
    assert autoscale(chosen, signals, 180.0, history).recommendations["capacity"] == 3


def test_before_a_startup_is_learned_the_forecast_reaches_as_far_as_a_starting_unit_has_waited() -> None:
    # No startup learned; a unit pending since 90 s at 180 s: the trend's 1/60 per second over
    # 90 s is 1.5 more, 5.5 requests/s at 1500 tokens is 8250 tokens/s, 4.125 units of 2000: 5.
    chosen = policy(INFLIGHT, capacity_utilization=1.0)
    history = History(capacity_per_unit=2000.0, demand=RISING)
    signals = demand(*units(2, inflight=2.0, waiting=0.0), *pending(1, since=90.0))
    decision = autoscale(chosen, signals, 180.0, history)
    assert decision.recommendations["capacity"] == 5


def test_no_scale_down_while_the_demand_rises() -> None:
    # 6 units with 2 in flight each at target 5 ask for 3; the demand rose from 3 to 4 requests/s
    # in the last minute: 1 more within the 150 s startup, 7500 tokens/s over 2000 is 3.75: 4.
    # Both ask for fewer than 6, but a unit removed now would be started again: kept at 6.
    chosen = policy(INFLIGHT, capacity_utilization=1.0)
    signals = demand(*units(6, inflight=2.0, waiting=0.0))
    rising = History(capacity_per_unit=2000.0, startup=150.0, demand=((0.0, 3.0),))
    decision = autoscale(chosen, signals, 60.0, rising)
    assert decision.recommendations == {"inflight": 3, "capacity": 4}
    assert decision.desired == 6
    assert decision.reason.endswith(
        "kept at 6: the arrival rate is rising (+1 requests/s within 150 s), no scale-down."
    )
    # Falling from 5 to 4: the windows' business, down to 3 at once (no window in this policy).
    falling = History(capacity_per_unit=2000.0, startup=150.0, demand=((0.0, 5.0),))
    assert autoscale(chosen, signals, 60.0, falling).desired == 3
