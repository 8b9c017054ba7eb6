"""A backlog asks for the units that drain it, not for a unit per target; a short queue and the
guards only raise the count; the capacity floor plans units below their full capacity."""

from __future__ import annotations

import pytest

from phalanx.autoscale.backlog import (
    MOST,
    backlog_requests,
    drained,
    keep_demand,
    learn_startup,
    need,
    planned_drain,
    rise,
)
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
    # 6000 / (2000 x 0.75) = 4 units; a unit completes 2000 x 0.75 x 4 / 6000 = 1 request/s;
    # 2 x (30 held + 10 waiting) = 80 requests. With no startup (lead 0) 5 units serve 1 a second
    # beyond the 4 arriving: 80 s; 4 would never drain it: 5, one more than the demand's 4.
    signals = demand(*units(2, queue=30.0, waiting=10.0))
    found = need(signals.units, signals, 2000.0, 0.75, 120.0)
    assert found is not None
    assert (found.steady, found.backlog, found.drain, found.units) == pytest.approx((4.0, 80.0, 1.0, 5))
    assert found.text("group") == (
        "the demand needs 4 and the backlog of 80 requests 1 more to drain within 120 s of when a "
        "group asked for now is ready: 5"
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
    # 6000 / 2000 = 3 units, and 60 waiting served within 120 s (no startup known: lead 0) at
    # 4/3 requests/s per unit needs 60 / 120 + 4 = 4.5 requests/s, 3.375 units: 4, 1 more.
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    signals = demand(*units(2, inflight=40.0, waiting=30.0))
    decision = autoscale(chosen, signals, 0.0, History(capacity_per_unit=2000.0))
    assert decision.recommendations == {"inflight": 4}
    assert decision.desired == 4
    assert decision.reason == (
        "inflight 80 over 2 groups at target 5 per group asks for 16, but the demand needs 3 and the "
        "backlog of 60 requests 1 more to drain within 120 s of when a group asked for now is ready: 4."
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


def test_a_backlog_is_drained_by_the_units_ready_and_those_arriving() -> None:
    # 10 requests, 4 arriving a second, 2 units serving 1 each: +2 a second for 10 s (30), then
    # 8 units from 10 s serve 4 more than arrive: 0 at 17.5 s.
    assert drained(10.0, 4.0, 1.0, 2, [(10.0, 6)], 17.5)
    assert not drained(10.0, 4.0, 1.0, 2, [(10.0, 6)], 17.0)
    assert not drained(10.0, 4.0, 1.0, 2, [(20.0, 6)], 17.5)  # arriving too late counts nothing
    assert drained(0.0, 4.0, 1.0, 4, [], 1.0)


def test_the_drain_counts_what_piles_up_until_new_units_are_ready() -> None:
    # 100 requests wait, 4 a second arrive, 2 units serve 1 each: 2 a second pile up for the 150 s
    # startup, 400 by then; drained within 120 s more needs 400 / 120 + 2 = 5.33 more than the 2
    # ready (a unit serves 1): 6 more, 5 are not enough.
    assert planned_drain(100.0, 4.0, 1.0, 2, (), 150.0, 120.0) == 6
    # Units already starting (ready in 30 s and 60 s) serve it from then: 160 at 30 s, 190 at
    # 60 s, then 4 units keep up with the arrivals; 190 / 120 s = 1.58: 2 more.
    assert planned_drain(100.0, 4.0, 1.0, 2, (30.0, 60.0), 150.0, 120.0) == 2
    # Enough starting: nothing more.
    assert planned_drain(100.0, 4.0, 1.0, 2, (30.0,) * 6, 150.0, 120.0) == 0
    # A unit that serves nothing never drains it: the count is bounded, not endless.
    assert planned_drain(100.0, 4.0, 0.0, 2, (), 150.0, 120.0) == MOST


def test_units_starting_are_not_asked_for_twice() -> None:
    # 4 requests/s, 2 ready units completing 4/3 each (2000 tokens/s at 100%, 1500 per request),
    # 80 requests waiting. 2 units starting, ready in 60 s (lead 150 s: asked at 90 s).
    chosen = policy(INFLIGHT, capacity_utilization=1.0, capacity_floor=False)
    live = (*units(2, inflight=40.0, waiting=40.0), *pending(2, since=90.0))
    history = History(capacity_per_unit=2000.0, startup=150.0)
    found = need(live, demand(*live), 2000.0, 1.0, 120.0, (60.0, 60.0), 150.0)
    assert found is not None
    # Until 60 s: 80 + (4 - 8/3) x 60 = 160; then 4 units serve 16/3: 4/3 a second less, 0 at 180 s,
    # within 150 + 120 s: the 4 units asked for are enough (3 the demand, 1 for the backlog).
    assert (found.steady, found.drain, found.units) == pytest.approx((3.0, 1.0, 4))
    decision = autoscale(chosen, demand(*live), 180.0, history)
    assert (decision.recommendations, decision.desired) == ({"inflight": 4}, 4)


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
    assert (
        "the demand needs 3 and the backlog of 0 requests 0 more to drain within 120 s of when a "
        "group asked for now is ready: 3" in decision.reason
    )
    # With no capacity learned the need is unknown and the guard stands.
    unknown = autoscale(chosen, signals, 0.0, History())
    assert unknown.recommendations == {"inflight": 2, "ttft_p95": 5}
    assert unknown.desired == 5
