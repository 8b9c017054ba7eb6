"""The oracle: the fewest units per minute that meet the objective, on hand-sized traces."""

from __future__ import annotations

import dataclasses

import pytest

from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.trace import Request, Trace
from phalanx.autoscale.types import Signals
from tests.unit.autoscale.test_clones import _load

oracle = _load("oracle")

# One request at a time per unit: a 500-token prompt takes 0.5 s to first token, 1 s in all.
MODEL = CapacityModel(
    slots=1, engine_queue=0, prefill_tokens_per_second=1000.0, decode_tokens_per_second=10.0
)


def test_no_requests_no_units() -> None:
    assert oracle.oracle(Trace("empty", (), 180.0), MODEL, 1.0).units == (0, 0, 0)


def test_the_fewest_units_that_meet_the_objective_each_minute() -> None:
    # Minute 0: one request every 2 s (one unit is enough); minute 1: three at once every 2 s
    # (the third would wait 1 s behind another on two units: 1.5 s > 1 s); minute 2: nothing.
    first = [Request(float(t), 500, 5) for t in range(0, 60, 2)]
    second = [Request(float(t), 500, 5) for t in range(60, 120, 2) for _ in range(3)]
    result = oracle.oracle(Trace("hand", (*first, *second), 180.0), MODEL, 1.0)
    assert result.units == (1, 3, 0)
    assert result.result.unserved == 0
    assert all(result.result.ttft(i) == 0.5 for i in range(len(first) + len(second)))


def test_the_oracle_may_leave_a_twentieth_of_a_minute_late() -> None:
    # 20 requests at once: with 19 units one waits (5% late), which the default attainment allows.
    burst = [Request(0.0, 500, 5)] * 20
    assert oracle.oracle(Trace("burst", tuple(burst), 60.0), MODEL, 1.0).units == (19,)
    assert oracle.oracle(Trace("burst", tuple(burst), 60.0), MODEL, 1.0, attainment=1.0).units == (20,)


def test_the_planned_oracle_asks_for_each_minute_s_units_a_startup_ahead() -> None:
    ahead = oracle.Ahead((1, 1, 4, 2, 0), lead=90.0)
    # At 0 s it sees minutes 0 and 1 (0..90 s); at 30 s minute 2 (120 s) is within 90 s: 4.
    assert [ahead.decide(Signals(units=()), t) for t in (0.0, 30.0, 150.0, 185.0, 240.0, 600.0)] == [
        1,
        4,
        4,
        2,
        0,
        0,
    ]


def test_the_planned_oracle_has_units_ready_when_the_minute_begins() -> None:
    # One request at 150 s: the instant oracle wants 1 unit in minute 2 only. With a 90 s start
    # the planned one asks for it at 30 s (minute 2 begins within 90 s), ready at 120 s.
    model = dataclasses.replace(MODEL, pending_delay=30.0, cold_start=60.0)
    trace = Trace("late", (Request(150.0, 100, 10),), 180.0)
    best = oracle.oracle(trace, model, 1.0)
    assert best.units == (0, 0, 1)
    result = oracle.planned(trace, model, best)
    first = result.first_token[0]
    assert first == pytest.approx(150.1)  # prefill only: no wait for a unit
    assert [c.held for c in result.counts][:2] == [0, 1] and result.counts[1].time == 30.0


def test_the_late_oracle_asks_for_the_count_of_the_minute_a_delay_ago() -> None:
    behind = oracle.Behind((1, 4, 2), delay=15.0)
    assert [behind.decide(Signals(units=()), t) for t in (0.0, 60.0, 75.0, 135.0, 600.0)] == [1, 1, 4, 2, 2]
    assert oracle.Behind((), delay=15.0).decide(Signals(units=()), 0.0) == 0
