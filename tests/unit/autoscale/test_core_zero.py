"""Scale from zero at once on the admission queue; to zero only after a whole idle window."""

from __future__ import annotations

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import History, MetricTarget, Recommendation, Signals, StepLimit
from phalanx.autoscale.zero import idle_for
from tests.unit.autoscale.core_builders import every, policy, run, units

TIGHT = StepLimit(instances=1, percent=0.0, period=600.0, stabilization_window=600.0)
DOWN = StepLimit(instances=100, period=0.0, stabilization_window=60.0)
QUEUE = MetricTarget("queue", 5.0)
INFLIGHT = MetricTarget("inflight", 5.0)


def test_the_admission_queue_at_zero_units_starts_one_at_once() -> None:
    decision = autoscale(policy(QUEUE, scale_up=TIGHT), Signals(units=(), admission_queue=1), 0.0, History())
    assert (decision.current, decision.desired, decision.mode) == (0, 1, "Stable")
    assert decision.recommendations == {"queue": 1, "admission-queue": 1}
    assert decision.reason == (
        "queue 1 over 0 groups (admission queue 1 included) at target 5 per group asks for 1; "
        "started at once: no window or limit holds back the first group."
    )


def test_a_long_admission_queue_starts_what_it_needs_with_no_window_or_limit() -> None:
    decision = autoscale(policy(QUEUE, scale_up=TIGHT), Signals(units=(), admission_queue=40), 0.0, History())
    assert decision.desired == 8


def test_the_start_from_zero_still_respects_max() -> None:
    decision = autoscale(policy(QUEUE, max_replicas=3), Signals(units=(), admission_queue=40), 0.0, History())
    assert decision.desired == 3


def test_nothing_waiting_at_zero_stays_at_zero() -> None:
    decision = autoscale(policy(), Signals(units=()), 0.0, History())
    assert (decision.desired, decision.changed) == (0, False)


def test_min_replicas_brings_zero_back_up_without_requests() -> None:
    assert autoscale(policy(min_replicas=1), Signals(units=()), 0.0, History()).desired == 1


def test_to_zero_only_after_the_whole_scale_down_window_was_idle() -> None:
    decisions = run(policy(scale_down=DOWN), every(15.0, 6, Signals(units=units(2, inflight=0.0))))
    assert [d.desired for d in decisions] == [1, 1, 1, 1, 0, 0]  # idle from t=0 through t=60
    assert decisions[0].reason == (
        "inflight 0 over 2 groups at target 5 per group asks for 0; "
        "kept at 1: the load has not been 0 for the whole 60 s scale-down window."
    )


def test_one_busy_pass_inside_the_window_keeps_one_unit() -> None:
    idle, busy = Signals(units=units(1, inflight=0.0)), Signals(units=units(1, inflight=1.0))
    decisions = run(
        policy(scale_down=DOWN), every(15.0, 9, [idle, idle, busy, idle, idle, idle, idle, idle, idle])
    )
    assert [d.desired for d in decisions] == [1, 1, 1, 1, 1, 1, 1, 0, 0]


def test_the_admission_queue_counts_as_load_for_the_idle_window() -> None:
    idle = Signals(units=units(1, inflight=0.0, queue=0.0))
    held = Signals(units=units(1, inflight=0.0, queue=0.0), admission_queue=1)
    decisions = run(policy(INFLIGHT, QUEUE, scale_down=DOWN), every(30.0, 4, [idle, held, idle, idle]))
    assert [d.desired for d in decisions] == [1, 1, 1, 1]


def test_min_replicas_above_zero_never_goes_to_zero() -> None:
    chosen = policy(min_replicas=1, scale_down=DOWN)
    assert [d.desired for d in run(chosen, every(30.0, 5, Signals(units=units(3, inflight=0.0))))] == [
        1,
        1,
        1,
        1,
        1,
    ]


def test_with_no_window_zero_is_reached_in_one_pass() -> None:
    chosen = policy(scale_down=StepLimit(instances=100, period=0.0, stabilization_window=0.0))
    assert autoscale(chosen, Signals(units=units(2, inflight=0.0)), 0.0, History()).desired == 0


def test_idle_for() -> None:
    recs = (Recommendation(0.0, 0), Recommendation(30.0, 0), Recommendation(60.0, 0))
    assert idle_for(recs, 60.0, 60.0)
    assert not idle_for(recs, 60.0, 61.0)  # nothing is known from before 0
    assert not idle_for((Recommendation(0.0, 1), *recs[1:]), 60.0, 60.0)
    assert idle_for((Recommendation(0.0, 1), *recs[1:]), 60.0, 30.0)
    assert not idle_for((), 0.0, 0.0)


def test_a_max_of_zero_switches_the_target_off_at_once() -> None:
    decision = autoscale(
        policy(max_replicas=0, scale_down=DOWN), Signals(units=units(2, inflight=9.0)), 0.0, History()
    )
    assert decision.desired == 0
    assert decision.reason.endswith("; capped at the maximum 0.")
