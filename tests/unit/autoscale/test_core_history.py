"""The history: bounded, pruned to the longest window, and all a restarted controller needs."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.record import append_record, prune_recommendations
from phalanx.autoscale.types import DecisionRecord, History, PanicRule, Recommendation, Signals, StepLimit
from tests.unit.autoscale.core_builders import every, pending, policy, round_trip, run, units


def noisy_trace(passes: int) -> list[Signals]:
    """A load that swings, with a unit starting now and then: every rule gets exercised."""
    trace = []
    for i in range(passes):
        total = 30 + 25 * math.sin(i / 6) + (7 * i) % 11
        ready = units(
            max(1, round(total / 6)),
            inflight=total / max(1, round(total / 6)),
            waiting=1.0,
            tokens_per_second=900.0,
        )
        starting = pending(1, since=i * 15.0 - 20 * (i % 5)) if i % 4 == 0 else ()
        trace.append(Signals(units=(*ready, *starting), demand_tokens_per_second=total * 100))
    return trace


DEFAULTS = policy(
    max_replicas=12,
    scale_up=StepLimit(stabilization_window=30.0),
    scale_down=StepLimit(stabilization_window=120.0),
    panic=PanicRule(),
    pending_timeout=45.0,
    history_limit=6,
)


def test_a_restart_that_rebuilds_the_history_from_status_decides_the_same() -> None:
    passes = every(15.0, 40, noisy_trace(40))
    straight = run(DEFAULTS, passes)
    restarted = run(DEFAULTS, passes[:17]) + run(DEFAULTS, passes[17:], round_trip(straight[16].history))
    assert [(d.desired, d.mode, d.reason) for d in restarted] == [
        (d.desired, d.mode, d.reason) for d in straight
    ]
    assert len({d.desired for d in straight}) > 3  # the trace really moves


def test_records_are_bounded_and_only_kept_for_changes() -> None:
    decisions = run(DEFAULTS, every(15.0, 40, noisy_trace(40)))
    for decision in decisions:
        assert len(decision.history.records) <= 6
        records = decision.history.records
        for before, record in itertools.pairwise(records):
            assert record.desired != record.previous or record.mode != before.mode


def test_a_steady_target_adds_no_records() -> None:
    decisions = run(policy(), every(15.0, 5, Signals(units=units(2, inflight=5.0))))
    assert [d.history.records for d in decisions] == [()] * 5


def test_append_record_keeps_changes_and_mode_switches() -> None:
    up = DecisionRecord(0.0, 1, 2, "Stable", "a")
    same = DecisionRecord(15.0, 2, 2, "Stable", "b")
    panic = DecisionRecord(30.0, 2, 2, "Panic", "c")
    calm = DecisionRecord(45.0, 2, 2, "Stable", "d")
    records: tuple[DecisionRecord, ...] = ()
    for record in (up, same, panic, calm):
        records = append_record(records, record, 3)
    assert records == (up, panic, calm)
    assert append_record(records, DecisionRecord(60.0, 2, 3, "Stable", "e"), 2) == (
        calm,
        DecisionRecord(60.0, 2, 3, "Stable", "e"),
    )
    assert append_record(records, DecisionRecord(60.0, 2, 3, "Stable", "e"), 0) == ()


def test_the_same_move_not_yet_in_effect_is_recorded_once() -> None:
    # Observe-only: the count stays 1, and every pass decides 1 -> 3 again.
    first = DecisionRecord(0.0, 1, 3, "Stable", "a")
    records = append_record((), first, 8)
    records = append_record(records, DecisionRecord(15.0, 1, 3, "Stable", "b"), 8)
    assert records == (first,)
    # Another move, or the same in another mode, is a new record.
    other = DecisionRecord(30.0, 1, 4, "Stable", "c")
    panic = DecisionRecord(45.0, 1, 4, "Panic", "d")
    assert append_record(append_record(records, other, 8), panic, 8) == (first, other, panic)


def test_an_observe_only_policy_records_its_repeated_decision_once() -> None:
    watching = replace(policy(), observe_only=True)
    decisions = run(watching, every(15.0, 4, Signals(units=units(1, inflight=15.0))))
    assert [len(d.history.records) for d in decisions] == [1, 1, 1, 1]
    assert all(d.desired > 1 for d in decisions)


def test_recommendations_are_pruned_to_the_longest_window_plus_the_one_in_force_at_its_start() -> None:
    recs = tuple(Recommendation(float(t), t) for t in range(0, 100, 10))
    assert prune_recommendations(recs, 90.0, 25.0) == recs[6:]  # 60 is in force at 65; 70, 80, 90 within
    assert prune_recommendations(recs, 90.0, 30.0) == recs[5:]  # 60 exactly at the start, 50 before it
    assert prune_recommendations(recs, 90.0, 0.0) == recs[8:]


def test_the_decision_keeps_only_what_the_windows_need() -> None:
    decisions = run(DEFAULTS, every(15.0, 40, noisy_trace(40)))
    last = decisions[-1].history
    assert all(r.time >= 585.0 - 120.0 for r in last.recommendations[1:])
    assert last.recommendations[0].time < 585.0 - 120.0


def test_scale_times_are_kept() -> None:
    chosen = policy(scale_down=StepLimit(instances=100, period=0.0))
    decisions = run(
        chosen, [(0.0, Signals(units=units(1, inflight=20.0))), (15.0, Signals(units=units(4, inflight=1.0)))]
    )
    assert (decisions[1].history.last_scale_up, decisions[1].history.last_scale_down) == (0.0, 15.0)


def test_observe_only_decides_and_says_it_changed_nothing() -> None:
    decision = autoscale(policy(observe_only=True), Signals(units=units(1, inflight=20.0)), 0.0, History())
    assert decision.desired == 4
    assert decision.reason.endswith("asks for 4 (observe only: not applied).")
