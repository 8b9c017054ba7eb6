"""Windows, step limits (Kthena's semantics), panic mode and the [min, max] clamp."""

from __future__ import annotations

import pytest

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.stabilize import counts_in_force, down_floor, smallest_down, up_limit
from phalanx.autoscale.types import DecisionRecord, History, PanicRule, SelectPolicy, Signals, StepLimit
from tests.unit.autoscale.core_builders import every, policy, run, units


def queue(count: int, total: float) -> Signals:
    return Signals(units=units(count, inflight=total / count))


@pytest.mark.parametrize(
    ("base", "instances", "percent", "select", "ceiling"),
    [
        (4, 2, 100.0, "Or", 8),  # the looser of 4+2 and 4+4
        (4, 2, 100.0, "And", 6),  # the tighter
        (4, 1, 10.0, "Or", 5),  # 10% of 4 floors to 0
        (0, 1, 100.0, "Or", 1),  # from zero only the instances count
        (0, 1, 100.0, "And", 0),
        (10, 3, 25.0, "And", 12),
    ],
)
def test_up_limit(base: int, instances: int, percent: float, select: SelectPolicy, ceiling: int) -> None:
    assert up_limit(base, StepLimit(instances=instances, percent=percent, select=select)) == ceiling


@pytest.mark.parametrize(
    ("base", "instances", "percent", "select", "floor"),
    [
        (10, 2, 50.0, "Or", 5),  # the looser of 10-2 and 10-5
        (10, 2, 50.0, "And", 8),  # the tighter
        (10, 1, 100.0, "Or", 0),
        (3, 1, 50.0, "And", 2),  # 50% of 3 floors to 1
    ],
)
def test_down_floor(base: int, instances: int, percent: float, select: SelectPolicy, floor: int) -> None:
    assert down_floor(base, StepLimit(instances=instances, percent=percent, select=select)) == floor


def test_counts_in_force_include_the_period_start_and_the_current_count() -> None:
    records = (
        DecisionRecord(0.0, 1, 2, "Stable", ""),
        DecisionRecord(20.0, 2, 4, "Stable", ""),
    )
    assert counts_in_force(records, 4, 35.0, 15.0) == [4, 2, 4]
    assert counts_in_force(records, 4, 15.0, 15.0) == [4, 1, 2, 2, 4]  # a change at the start counts
    assert counts_in_force(records, 4, 36.0, 15.0) == [4]


def test_the_scale_up_limit_caps_the_step_and_the_reason_says_so() -> None:
    chosen = policy(scale_up=StepLimit(instances=2, percent=0.0, period=15.0))
    decision = autoscale(chosen, queue(4, 38), 0.0, History())
    assert decision.desired == 6
    assert decision.reason == (
        "inflight 38 over 4 groups at target 5 per group asks for 8; capped at 6 by the scale-up limit of "
        "2 groups per 15 s (2 or 0%, the looser)."
    )


def test_the_limit_counts_from_the_lowest_count_in_force_during_the_period() -> None:
    # Kthena's period window: a step taken at t=0 still bounds the pass at t=15, not at t=30.
    chosen = policy(scale_up=StepLimit(instances=1, percent=0.0, period=15.0))
    decisions = run(
        chosen, [(0.0, queue(1, 50)), (15.0, queue(2, 50)), (30.0, queue(2, 50)), (45.0, queue(3, 50))]
    )
    assert [d.desired for d in decisions] == [2, 2, 3, 3]


def test_the_scale_up_window_uses_its_lowest_recommendation() -> None:
    chosen = policy(scale_up=StepLimit(instances=100, period=0.0, stabilization_window=60.0))
    decisions = run(chosen, [(0.0, queue(2, 30)), (15.0, queue(2, 50)), (75.0, queue(2, 50))])
    assert [d.recommendations["inflight"] for d in decisions] == [6, 10, 10]
    assert [d.desired for d in decisions] == [6, 6, 10]
    assert (
        "held at 6 by the scale-up window (lowest recommendation in the last 60 s: 6)" in decisions[1].reason
    )


def test_the_scale_down_window_uses_its_highest_recommendation() -> None:
    chosen = policy(scale_down=StepLimit(instances=100, period=0.0, stabilization_window=300.0))
    # A recommendation made exactly one window ago still counts (Kthena's windows include their start).
    passes = [(0.0, queue(6, 30)), (100.0, queue(6, 10)), (300.0, queue(6, 10)), (301.0, queue(6, 10))]
    decisions = run(chosen, passes)
    assert [d.desired for d in decisions] == [6, 6, 6, 2]
    assert (
        "held at 6 by the scale-down window (highest recommendation in the last 300 s: 6)"
        in decisions[1].reason
    )


@pytest.mark.parametrize(("select", "expected"), [("Or", [5, 3, 2]), ("And", [9, 8, 7])])
def test_the_scale_down_limit_with_or_and_and(select: SelectPolicy, expected: list[int]) -> None:
    limit = StepLimit(instances=1, percent=50.0, period=10.0, select=select)
    chosen = policy(scale_down=limit)
    counts = [10, expected[0], expected[1]]
    decisions = run(chosen, [(i * 11.0, queue(n, 5)) for i, n in enumerate(counts)])  # passes past the period
    assert [d.desired for d in decisions] == expected


def test_panic_enters_at_the_threshold_and_grows_past_the_stable_limit() -> None:
    chosen = policy(
        scale_up=StepLimit(instances=1, percent=0.0, period=15.0),
        panic=PanicRule(percent=100.0, period=15.0, threshold_percent=200.0, hold=60.0),
    )
    decision = autoscale(chosen, queue(2, 60), 0.0, History())
    assert decision.mode == "Panic"
    assert decision.desired == 4  # 2 + 100% of 2, though the stable limit allows one
    assert "panic mode for 60 s: 12 is at least 200% of 2" in decision.reason
    assert "capped at 4 by the panic limit of 100% per 15 s from 2 groups" in decision.reason
    assert decision.history.panic_until == 60.0


def test_below_the_threshold_the_stable_limits_apply() -> None:
    chosen = policy(
        scale_up=StepLimit(instances=1, percent=0.0, period=15.0), panic=PanicRule(threshold_percent=200.0)
    )
    decision = autoscale(chosen, queue(4, 35), 0.0, History())
    assert (decision.mode, decision.desired) == ("Stable", 5)


def test_nothing_scales_down_in_panic_and_panic_ends_after_its_hold() -> None:
    chosen = policy(panic=PanicRule(percent=1000.0, period=15.0, threshold_percent=200.0, hold=60.0))
    passes = [(0.0, queue(2, 20)), (15.0, queue(4, 0)), (60.0, queue(4, 0)), (75.0, queue(4, 0))]
    decisions = run(chosen, passes)
    assert [(d.mode, d.desired) for d in decisions] == [
        ("Panic", 4),
        ("Panic", 4),
        ("Panic", 4),
        ("Stable", 0),
    ]
    assert "kept at 4: no scale-down in panic mode" in decisions[1].reason
    assert decisions[3].history.panic_until is None


def test_a_step_decides_within_one_period_with_the_default_policy() -> None:
    # The 1 -> 4x step of the goals: default limits and panic; the first pass after it acts.
    chosen = policy(scale_up=StepLimit(), scale_down=StepLimit(stabilization_window=300.0), panic=PanicRule())
    decisions = run(chosen, every(15.0, 3, [queue(2, 10), queue(2, 40), queue(8, 40)]))
    assert [d.desired for d in decisions] == [2, 8, 8]


@pytest.mark.parametrize(
    ("count", "total", "expected", "clause"),
    [
        (2, 200, 20, "capped at the maximum 20"),
        (3, 0, 3, "raised to the minimum 3"),
        (1, 0, 3, "raised to the minimum 3"),
    ],
)
def test_the_result_stays_within_min_and_max(count: int, total: float, expected: int, clause: str) -> None:
    decision = autoscale(policy(min_replicas=3, max_replicas=20), queue(count, total), 0.0, History())
    assert decision.desired == expected
    assert clause in decision.reason


def test_a_count_above_max_comes_down_to_max_at_once() -> None:
    chosen = policy(
        max_replicas=4,
        scale_down=StepLimit(instances=1, percent=0.0, period=60.0, stabilization_window=300.0),
    )
    assert autoscale(chosen, queue(8, 40), 0.0, History()).desired == 4


@pytest.mark.parametrize(
    ("current", "least"), [(0, 1), (1, 1), (4, 1), (5, 1), (6, 2), (10, 2), (11, 3), (20, 4)]
)
def test_a_scale_down_removes_at_least_a_fifth_of_the_count(current: int, least: int) -> None:
    assert smallest_down(current) == least


def test_a_scale_down_smaller_than_a_fifth_waits_until_the_window_falls_that_far() -> None:
    # 20 units, inflight target 5: 85 in flight asks for 17, 3 under 20 where the smallest step is
    # 4: kept at 20; 80 asks for 16: down to 16 at once.
    decisions = run(policy(), [(0.0, queue(20, 85.0)), (15.0, queue(20, 80.0))])
    assert [d.desired for d in decisions] == [20, 16]
    assert "kept at 20: a scale-down of 3 is under the smallest, 4 (20% of 20)" in decisions[0].reason
    assert "under the smallest" not in decisions[1].reason


def test_a_single_unit_scale_down_passes_at_five_units_or_fewer() -> None:
    # Azure's 4 to 3 must still pass, and so must 1 to 0 (scale to zero).
    assert [d.desired for d in run(policy(), [(0.0, queue(4, 15.0))])] == [3]
    assert [d.desired for d in run(policy(), [(0.0, Signals(units=units(1, inflight=0.0)))])] == [0]


def test_the_step_limit_may_still_move_a_smaller_step_than_the_smallest() -> None:
    # The window asks for 5 from 10 (5 >= 2): the user's limit of 1 per period then moves 1.
    limit = StepLimit(instances=1, percent=10.0, period=10.0, select="And")
    decisions = run(policy(scale_down=limit), [(0.0, queue(10, 25.0))])
    assert [d.desired for d in decisions] == [9]


WINDOW = StepLimit(instances=1000, period=0.0, stabilization_window=300.0)


def test_a_scale_down_waits_while_the_window_falls_another_step_within_a_minute() -> None:
    # 20 units at target 5 in flight: 100, 70, 55 in flight ask for 20, 14, 11. At 320 s the
    # window's highest is 14 (made at 30 s), but within 60 s only the 11s remain, 3 (the smallest
    # step from 14) further down: kept at 20, then down to 11 at 345 s in one action.
    passes = [(0.0, queue(20, 100.0)), (30.0, queue(20, 70.0)), (100.0, queue(20, 55.0))]
    passes += [(320.0, queue(20, 55.0)), (345.0, queue(20, 55.0))]
    decisions = run(policy(scale_down=WINDOW), passes)
    assert [d.desired for d in decisions] == [20, 20, 20, 20, 11]
    assert (
        "kept at 20: the window's highest recommendation falls to 11 within 60 s, one scale-down "
        "then instead of two" in decisions[3].reason
    )


def test_a_window_that_stays_lets_the_scale_down_through() -> None:
    # The same, but the load stays at 14: nothing lower is coming, so 20 -> 14 at 320 s.
    passes = [(0.0, queue(20, 100.0)), (30.0, queue(20, 70.0)), (320.0, queue(20, 70.0))]
    decisions = run(policy(scale_down=WINDOW), passes)
    assert [d.desired for d in decisions] == [20, 20, 14]
    assert "one scale-down then instead of two" not in decisions[2].reason


def test_a_window_no_longer_than_the_wait_never_holds_a_scale_down() -> None:
    short = StepLimit(instances=1000, period=0.0, stabilization_window=60.0)
    decisions = run(policy(scale_down=short), [(0.0, queue(20, 100.0)), (61.0, queue(20, 55.0))])
    assert [d.desired for d in decisions] == [20, 11]
