"""A scale-up right after another waits a pass unless it adds at least 30% of the count."""

from __future__ import annotations

import pytest

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.stabilize import FOLLOW_UP, Step, follow_up, smallest_follow_up
from phalanx.autoscale.types import History, PanicRule, Signals
from tests.unit.autoscale.core_builders import policy, run, units


def queue(count: int, total: float) -> Signals:
    return Signals(units=units(count, inflight=total / count))


@pytest.mark.parametrize(
    ("current", "least"), [(0, 1), (1, 1), (3, 1), (4, 2), (6, 2), (10, 3), (11, 4), (18, 6)]
)
def test_the_least_a_follow_up_adds_is_30_percent_rounded_up(current: int, least: int) -> None:
    assert smallest_follow_up(current) == least


@pytest.mark.parametrize(
    ("desired", "now", "last", "kept"),
    [
        (12, 15.0, 0.0, 10),  # 2 more 15 s after a scale-up: under 3
        (13, 15.0, 0.0, 13),  # 3 more: 30% of 10, goes
        (12, 30.0, 0.0, 12),  # a whole FOLLOW_UP later: goes
        (12, 15.0, None, 12),  # no scale-up yet
        (8, 15.0, 0.0, 8),  # a scale-down is not this rule's
        (10, 15.0, 0.0, 10),
    ],
)
def test_follow_up(desired: int, now: float, last: float | None, kept: int) -> None:
    assert follow_up(Step(desired), 10, now, last, "group").desired == kept


def test_a_small_scale_up_at_the_pass_after_one_waits_for_the_next() -> None:
    chosen = policy()  # target 5 in flight per unit, no window, no step limit
    passes = [(0.0, queue(2, 30)), (15.0, queue(6, 35)), (30.0, queue(6, 35))]
    decisions = run(chosen, passes)
    # Without the rule the pass at 15 s would ask for its 7th unit at once: three actions, not two.
    assert [d.desired for d in decisions] == [6, 6, 7]
    assert decisions[1].reason == (
        "inflight 35 over 6 groups at target 5 per group asks for 7; kept at 6: 15 s after a scale-up, "
        "1 group more is under 2 (30% of 6), the least a scale-up within 30 s of the last adds."
    )
    assert decisions[1].history.last_scale_up == 0.0  # the wait is no scale-up
    assert decisions[2].history.last_scale_up == 30.0
    assert FOLLOW_UP == 30.0


def test_a_large_scale_up_right_after_one_goes_at_once() -> None:
    decisions = run(policy(), [(0.0, queue(2, 30)), (15.0, queue(6, 45))])
    assert [d.desired for d in decisions] == [6, 9]  # 3 more, at least 30% of 6


def test_a_scale_down_right_after_a_scale_up_is_not_held_by_it() -> None:
    decisions = run(policy(), [(0.0, queue(2, 30)), (15.0, queue(6, 10))])
    assert [d.desired for d in decisions] == [6, 2]


def test_panic_mode_is_not_held_by_it() -> None:
    chosen = policy(panic=PanicRule(percent=1000.0, period=15.0, threshold_percent=110.0, hold=60.0))
    history = History(last_scale_up=0.0)
    decision = autoscale(chosen, queue(10, 60), 15.0, history)
    assert (decision.mode, decision.desired) == ("Panic", 12)  # 2 more, under 3: not held
