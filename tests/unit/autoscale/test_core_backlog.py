"""A backlog asks for the units that drain it, not for a unit per target; a short queue and the
guards only raise the count; the capacity floor plans units below their full capacity."""

from __future__ import annotations

import pytest

from phalanx.autoscale.backlog import backlog_requests, keep_demand, learn_startup, need, rise, still_starting
from phalanx.autoscale.capacity import capacity_figure
from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import History, MetricTarget, Signals, UnitSignals
from tests.unit.autoscale.core_builders import pending, policy, units

INFLIGHT = MetricTarget("inflight", 5.0)
QUEUE = MetricTarget("queue", 4.0)
TTFT = MetricTarget("ttft_p95", 2.0)


def demand(*unit_signals: UnitSignals, admission_queue: int = 0) -> Signals:
    """6000 tokens/s in 4 requests/s: 1500 tokens per request."""
    return Signals(
        units=unit_signals,
        admission_queue=admission_queue,
        demand_tokens_per_second=6000.0,
        demand_requests_per_second=4.0,
    )


def test_the_need_is_the_steady_demand_plus_what_drains_the_backlog_within_the_horizon() -> None:
    # 6000 / (2000 x 0.75) = 4 units; a unit completes 2000 x 4 / 6000 = 4/3 requests/s;
    # 2 x (30 held + 10 waiting) = 80 requests / (4/3 x 120 s) = 0.5 more: 5.
    signals = demand(*units(2, queue=30.0, waiting=10.0))
    found = need(signals.units, signals, 2000.0, 0.75, 120.0)
    assert found is not None
    assert (found.steady, found.backlog, found.drain, found.units) == pytest.approx((4.0, 80.0, 0.5, 5))
    assert (
        found.text("group")
        == "the demand needs 4 and the backlog of 80 requests 0.5 more to drain in 120 s: 5"
    )


def test_the_backlog_counts_the_admission_queue_and_unknowns_as_zero() -> None:
    live = (*units(1, queue=3.0, waiting=None), UnitSignals("g9", True), *pending(1, since=0.0))
    assert backlog_requests(live, Signals(units=live, admission_queue=7)) == 10.0


@pytest.mark.parametrize(
    ("tokens", "requests", "capacity"),
    [(None, 4.0, 2000.0), (6000.0, None, 2000.0), (6000.0, 4.0, None), (0.0, 0.0, 2000.0)],
)
def test_no_need_without_the_arrival_rate_and_a_capacity(
    tokens: float | None, requests: float | None, capacity: float | None
) -> None:
    signals = Signals(units=units(2), demand_tokens_per_second=tokens, demand_requests_per_second=requests)
    assert need(signals.units, signals, capacity, 0.9, 120.0) is None


def test_a_backlog_read_as_load_is_capped_at_what_drains_it() -> None:
    # 2 units with 40 in flight each (30 of them waiting) at target 5 asks for 16; the need is
    # 6000 / 2000 = 3 units and 60 waiting / (4/3 x 120) = 0.375 more: 4.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    signals = demand(*units(2, inflight=40.0, waiting=30.0))
    decision = autoscale(chosen, signals, 0.0, History(capacity_per_unit=2000.0))
    assert decision.recommendations == {"inflight": 4}
    assert decision.desired == 4
    assert decision.reason == (
        "inflight 80 over 2 groups at target 5 per group asks for 16, but the demand needs 3 and the "
        "backlog of 60 requests 0.375 more to drain in 120 s: 4."
    )


def test_the_drain_cap_never_lowers_the_count() -> None:
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    signals = demand(*units(6, inflight=40.0, waiting=0.0))
    decision = autoscale(chosen, signals, 0.0, History(capacity_per_unit=2000.0))
    assert decision.recommendations == {"inflight": 6}


def test_without_a_learned_capacity_the_ratio_stands() -> None:
    decision = autoscale(policy(INFLIGHT), demand(*units(2, inflight=40.0, waiting=30.0)), 0.0, History())
    assert decision.recommendations == {"inflight": 16}


def test_units_starting_count_toward_the_drain_need() -> None:
    # 4 units already (2 of them starting): the need of 4 asks for nothing more.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    signals = demand(*units(2, inflight=40.0, waiting=30.0), *pending(2, since=0.0))
    decision = autoscale(chosen, signals, 10.0, History(capacity_per_unit=2000.0))
    assert (decision.recommendations, decision.desired) == ({"inflight": 4}, 4)


def test_a_queue_within_its_target_only_keeps_units_while_requests_wait() -> None:
    waiting = autoscale(policy(QUEUE), Signals(units=units(3, queue=1.0)), 0.0, History())
    assert (waiting.recommendations, waiting.desired) == ({"queue": 3}, 3)
    assert waiting.reason.startswith(
        "queue 3 over 3 groups at target 4 per group keeps 3 while requests wait"
    )
    empty = autoscale(policy(QUEUE), Signals(units=units(3, queue=0.0)), 0.0, History())
    assert (empty.recommendations, empty.desired) == ({"queue": 0}, 3)
    assert empty.reason == (
        "queue 0 over 3 groups at target 4 per group asks for no more groups; "
        "nothing measures how busy the groups are, keeping 3 groups."
    )


def test_a_queue_within_its_target_lets_the_capacity_floor_scale_down() -> None:
    # 3000 tokens/s at 1000 per unit planned at 100%: 3 units; the queue is empty.
    chosen = policy(QUEUE, capacity_utilization=1.0)
    signals = Signals(units=units(5, queue=0.0), demand_tokens_per_second=3000.0)
    decision = autoscale(chosen, signals, 0.0, History(capacity_per_unit=1000.0))
    assert (decision.recommendations, decision.desired) == ({"queue": 0, "capacity": 3}, 3)


def test_a_queue_above_its_target_still_asks_through_the_ratio_rule() -> None:
    decision = autoscale(policy(QUEUE), Signals(units=units(2, queue=10.0)), 0.0, History())
    assert decision.recommendations == {"queue": 5}


def test_guards_within_their_objective_never_lower_the_count() -> None:
    decision = autoscale(policy(TTFT), Signals(units=units(4, ttft_p95=0.5)), 0.0, History())
    assert (decision.recommendations, decision.desired) == ({"ttft_p95": 0}, 4)


def test_the_floor_plans_units_at_the_policy_utilization() -> None:
    # 5400 / (1000 x 0.9) = 6.
    figure = capacity_figure(5400.0, 1000.0, 2, 0.1, "group", 0.9)
    assert figure is not None
    assert (figure.replicas, figure.text) == (
        6,
        "demand 5400 tokens/s at 90% of the learned 1000 tokens/s per group asks for 6",
    )


def test_no_demand_needs_no_unit_even_before_a_capacity_is_learned() -> None:
    figure = capacity_figure(0.0, None, 2, 0.1, "group")
    assert figure is not None
    assert (figure.replicas, figure.text) == (0, "no demand (0 tokens/s) needs no group")


def test_a_remembered_placement_limit_of_zero_still_starts_one_unit_for_held_requests() -> None:
    history = History(placement_limit=0, placement_retry_at=100.0)
    signals = Signals(units=(), admission_queue=3)
    decision = autoscale(policy(QUEUE), signals, 50.0, history)
    assert decision.desired == 1


def test_the_startup_is_learned_from_a_unit_seen_starting_and_now_ready() -> None:
    live = (*units(1, start=5), *pending(1, since=150.0))
    assert learn_startup(None, (("g5", 10.0), ("g7", 20.0)), live, 160.0) == 150.0
    assert learn_startup(90.0, (("g100", 150.0),), live, 160.0) == 90.0  # still starting: kept


def test_the_time_until_the_units_starting_are_ready() -> None:
    live = (*units(1), *pending(1, since=100.0), *pending(1, since=130.0, start=101))
    assert still_starting(live, 160.0, 150.0) == 120.0  # the youngest is 30 s old
    assert still_starting(live, 160.0, None) == 0.0
    assert still_starting(units(2), 160.0, 150.0) == 0.0


def test_the_backlog_that_grows_while_units_start_is_asked_for_at_once() -> None:
    # 4 requests/s arrive, 1 ready unit completes 4/3: 8/3 a second pile up for the 60 s until the
    # starting units are ready, 160 requests: 160 / (4/3 x 120 s) = 1 unit more than the 3 needed.
    signals = demand(*units(1, waiting=0.0), *pending(2, since=0.0))
    found = need(signals.units, signals, 2000.0, 1.0, 120.0, remaining=60.0)
    assert found is not None
    assert (found.steady, found.backlog, found.drain, found.units) == pytest.approx((3.0, 160.0, 1.0, 4))


def test_the_core_keeps_the_units_starting_and_the_startup_in_the_history() -> None:
    history = History(starting=(("g0", 0.0),), startup=None)
    signals = Signals(units=(*units(1), *pending(1, since=30.0)))
    decision = autoscale(policy(INFLIGHT), signals, 135.0, history)
    assert decision.history.startup == 135.0
    assert decision.history.starting == (("g100", 30.0),)


def test_the_demand_samples_keep_the_last_three_minutes_and_the_newest_older_one() -> None:
    samples = ((0.0, 1.0), (15.0, 2.0), (30.0, 3.0))
    assert keep_demand(samples, 90.0, 5.0) == ((0.0, 1.0), (15.0, 2.0), (30.0, 3.0), (90.0, 5.0))
    # At 200 s the three minutes start at 20 s: 15 s is the newest older one, 0 s goes.
    assert keep_demand(samples, 200.0, 5.0) == ((15.0, 2.0), (30.0, 3.0), (200.0, 5.0))
    assert keep_demand(samples, 30.0, None) == samples  # no rate this pass: nothing added


def test_the_rise_is_measured_against_the_rate_a_minute_ago_and_never_more_than_it() -> None:
    samples = ((0.0, 2.0), (30.0, 3.0), (45.0, 3.5))
    assert rise(samples, 60.0, 5.0, 30.0) == pytest.approx(1.5)  # 3 gained in 60 s: 1.5 in 30 s
    assert rise(samples, 60.0, 5.0, 150.0) == pytest.approx(3.0)  # 7.5 at that pace: held at 3
    assert rise(samples, 60.0, 1.0, 30.0) == 0.0  # falling: no rise
    assert rise(samples, 50.0, 5.0, 30.0) == 0.0  # no rate a minute old yet


def test_a_rising_demand_is_asked_for_a_startup_ahead() -> None:
    # 4 requests/s rising by 2 over the startup: 6 requests/s at 1500 tokens each is 9000 tokens/s,
    # 4.5 units of 2000.
    signals = demand(*units(2, waiting=0.0))
    found = need(signals.units, signals, 2000.0, 1.0, 120.0, ahead=2.0)
    assert found is not None
    assert (found.steady, found.units) == pytest.approx((4.5, 5))


def test_the_core_projects_the_rise_over_the_learned_startup() -> None:
    # The arrival rate rose from 2 to 4 requests/s in 60 s (1/30 per s); over a 60 s startup that
    # is 2 more: 6000 x 6 / 4 / 2000 = 4.5 units, and no backlog: 5.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    history = History(capacity_per_unit=2000.0, startup=60.0, demand=((0.0, 2.0),))
    decision = autoscale(chosen, demand(*units(2, inflight=40.0, waiting=0.0)), 60.0, history)
    assert decision.recommendations == {"inflight": 5}
    assert decision.history.demand == ((0.0, 2.0), (60.0, 4.0))


def test_a_latency_guard_asks_for_no_more_than_the_demand_and_the_backlog_need() -> None:
    # TTFT p95 5 s over the 2 s objective asks for one more than the 4 ready units: 5. The demand
    # needs 6000 / 2000 = 3 units and nothing waits: the p95 holds old waits, the guard is capped
    # at the current 4.
    chosen = policy(INFLIGHT, TTFT, capacity_utilization=1.0)
    signals = demand(*units(4, inflight=2.0, waiting=0.0, ttft_p95=5.0))
    decision = autoscale(chosen, signals, 0.0, History(capacity_per_unit=2000.0))
    assert decision.recommendations == {"inflight": 2, "ttft_p95": 4, "capacity": 3}
    assert decision.desired == 4
    assert "the demand needs 3 and the backlog of 0 requests 0 more to drain in 120 s: 3" in decision.reason
    # With no capacity learned the need is unknown and the guard stands.
    unknown = autoscale(chosen, signals, 0.0, History())
    assert unknown.recommendations == {"inflight": 2, "ttft_p95": 5}
    assert unknown.desired == 5
