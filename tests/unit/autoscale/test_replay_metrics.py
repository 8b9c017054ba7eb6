"""The run's figures, computed by hand on small made-up runs."""

from __future__ import annotations

import pytest

from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.metrics import (
    actions,
    capacity_back,
    decision_time,
    direction_changes,
    gpu_hours,
    peak_units,
    slo_attainment,
    summarize,
    timeline,
    unplaced_seconds,
    zero_seconds,
)
from phalanx.autoscale.replay.replayer import Pass, RunResult, UnitCount
from phalanx.autoscale.replay.trace import Request, Trace

MODEL = CapacityModel(gpus_per_unit=8)


def run(
    counts: tuple[UnitCount, ...],
    passes: tuple[Pass, ...] = (),
    arrivals: tuple[float, ...] = (),
    first: tuple[float | None, ...] = (),
    duration: float = 3600.0,
) -> RunResult:
    trace = Trace("made-up", tuple(Request(a, 100, 10) for a in arrivals), duration)
    finished = tuple(None if f is None else f + 1 for f in first)
    return RunResult(trace, MODEL, duration, first, finished, passes, counts)


def test_gpu_hours_count_every_unit_holding_gpus_until_the_trace_ends() -> None:
    # 1 unit for 30 min, then 3 for 30 min: 2 unit-hours x 8 GPUs = 16 GPU-hours.
    result = run((UnitCount(0.0, 1, 1, 1), UnitCount(1800.0, 3, 1, 3)))
    assert gpu_hours(result) == pytest.approx(16.0)
    assert gpu_hours(result, until=1800.0) == pytest.approx(4.0)


def test_units_that_could_not_be_placed_hold_no_gpu() -> None:
    result = run((UnitCount(0.0, 1, 1, 1), UnitCount(600.0, 4, 1, 2, unplaced=2), UnitCount(900.0, 1, 1, 1)))
    assert gpu_hours(result) == pytest.approx((3600 + 300) * 8 / 3600)
    assert unplaced_seconds(result) == 300.0
    assert zero_seconds(result) == 0.0
    idle = run((UnitCount(0.0, 1, 1, 1), UnitCount(600.0, 0, 0, 0), UnitCount(1000.0, 1, 0, 1)))
    assert zero_seconds(idle) == 400.0
    assert peak_units(result) == 4


def test_attainment_counts_unserved_requests_as_misses() -> None:
    result = run((UnitCount(0.0, 1, 1, 1),), arrivals=(0.0, 1.0, 2.0, 3.0), first=(0.5, 4.0, 3.9, None))
    assert slo_attainment(result, 2.0) == 0.5  # 0.5 s and 1.9 s meet it; 3 s and never do not
    figures = summarize(result, 2.0)
    assert (figures.requests, figures.served, figures.unserved, figures.dropped) == (4, 3, 1, 0)


def test_actions_and_changes_of_direction() -> None:
    passes = (
        Pass(0.0, 2, 2),
        Pass(15.0, 2, 4),  # up
        Pass(30.0, 4, 5),  # up
        Pass(45.0, 5, 5),
        Pass(60.0, 5, 3),  # down: a change of direction
        Pass(75.0, 3, 4),  # up: another
    )
    result = run((UnitCount(0.0, 2, 2, 2),), passes)
    assert [p.time for p in actions(result)] == [15.0, 30.0, 60.0, 75.0]
    assert direction_changes(result) == 2


def test_decision_time_and_capacity_back_after_a_step() -> None:
    passes = (Pass(300.0, 2, 2), Pass(315.0, 2, 6))
    counts = (UnitCount(0.0, 2, 2, 2), UnitCount(315.0, 6, 2, 6), UnitCount(465.0, 6, 6, 6))
    result = run(counts, passes)
    assert decision_time(result, 300.0) == 15.0
    assert capacity_back(result, 300.0, 6) == 165.0
    assert capacity_back(result, 300.0, 2) == 0.0  # already there
    assert capacity_back(result, 300.0, 7) is None
    assert decision_time(result, 400.0) is None


def test_the_timeline_per_minute() -> None:
    counts = (UnitCount(0.0, 1, 1, 1), UnitCount(30.0, 3, 1, 3), UnitCount(90.0, 3, 3, 3))
    result = run(counts, arrivals=(10.0, 70.0, 80.0), first=(10.5, 75.0, 80.5), duration=120.0)
    first, second = timeline(result, 2.0)
    assert (first.arrivals, first.attainment, first.ttft_p95) == (1, 1.0, 0.5)
    assert (first.units_mean, first.units_max, first.ready_mean) == (2.0, 3, 1.0)
    assert first.gpu_hours == pytest.approx((30 * 1 + 30 * 3) * 8 / 3600)
    assert (second.arrivals, second.attainment, second.ttft_p95) == (2, 0.5, 5.0)
    assert (second.units_mean, second.units_max, second.ready_mean) == (3.0, 3, 2.0)
