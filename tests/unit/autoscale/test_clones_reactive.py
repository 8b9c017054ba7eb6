"""The reactive bound: every unit it may, the moment the load it has seen needs more than it holds."""

from __future__ import annotations

import dataclasses

from phalanx.autoscale.replay.metrics import summarize
from phalanx.autoscale.replay.replayer import replay
from phalanx.autoscale.replay.trace import Request, Trace
from phalanx.autoscale.types import Signals, UnitSignals
from tests.unit.autoscale.test_clones import _load
from tests.unit.autoscale.test_clones_oracle import MODEL

oracle = _load("oracle")
reactive = _load("reactive")


def held(count: int, draining: int = 0, ready: bool = True) -> Signals:
    units = [UnitSignals(f"u{i}", ready=ready) for i in range(count)]
    units += [UnitSignals(f"d{i}", ready=True, draining=True) for i in range(draining)]
    return Signals(units=tuple(units))


def test_it_keeps_what_it_holds_while_the_load_seen_needs_no_more() -> None:
    bound = reactive.Reactive((2, 2, 1, 0), max_units=32)
    # Minutes needing as many or fewer: never a unit given back, never one added.
    assert [bound.decide(held(2), t) for t in (0.0, 60.0, 140.0, 200.0, 900.0)] == [2, 2, 2, 2, 2]
    assert reactive.Reactive((), max_units=32).decide(held(3), 0.0) == 3


def test_every_unit_once_a_period_of_a_minute_that_needs_more_is_seen() -> None:
    bound = reactive.Reactive((2, 6, 6), max_units=32)
    # Minute 1 needs 6; at 60 s none of it has been seen, at 75 s one period has.
    assert bound.decide(held(2), 60.0) == 2
    assert bound.decide(held(2), 74.9) == 2
    assert bound.decide(held(2), 75.0) == 32
    # Units starting count as held; draining ones do not.
    assert bound.decide(held(6, ready=False), 80.0) == 6
    assert bound.decide(held(4, draining=3), 80.0) == 32
    # The platform's cap, where it places fewer than maxReplicas, is what it may ask for.
    assert reactive.Reactive((2, 6), max_units=4).decide(held(2), 75.0) == 4


def test_on_a_step_it_serves_at_least_what_the_exact_count_asked_as_late_serves() -> None:
    # One request every 2 s for a minute, then three every 2 s: one unit, then three. Units start
    # in 20 s (Pending 5 s, cold start 15 s).
    model = dataclasses.replace(MODEL, pending_delay=5.0, cold_start=15.0)
    first = [Request(float(t), 500, 5) for t in range(0, 60, 2)]
    second = [Request(float(t), 500, 5) for t in range(60, 180, 2) for _ in range(3)]
    trace = Trace("step", (*first, *second), 180.0)
    best = oracle.oracle(trace, model, 1.0)
    assert best.units == (1, 3, 3)
    bound = replay(trace, model, reactive.Reactive(best.units, max_units=8), initial_units=1)
    late = oracle.late(trace, model, best, delay=15.0)
    within, within_late = summarize(bound, 1.0).slo_attainment, summarize(late, 1.0).slo_attainment
    assert within >= within_late
    # It asked once, for every unit, at 75 s; the late oracle asked for 3 at the same pass.
    changes = [(c.time, c.held) for c in bound.counts]
    assert changes[:2] == [(0.0, 1), (75.0, 8)]
    assert within < 1.0  # what arrived before the units were ready still waited
