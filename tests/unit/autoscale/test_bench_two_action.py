"""The two-action bound: the cheapest schedule with few changes that meets each minute's count."""

from __future__ import annotations

import dataclasses
from collections import Counter

from phalanx.autoscale.replay.metrics import summarize
from phalanx.autoscale.replay.trace import Request, Trace
from tests.unit.autoscale.test_bench_run import MODEL, load_bench
from tests.unit.autoscale.test_clones import _load

two_action = load_bench("two_action")
oracle = _load("oracle")

# Ready 15 s after it is asked for: one pass (15 s) ahead of the minute that needs it.
AHEAD = dataclasses.replace(MODEL, cold_start=15.0)


def test_every_schedule_with_few_changes_at_its_cheapest_levels() -> None:
    found = set(two_action.schedules((1, 3, 1, 2), 2))
    assert found == {
        (3, 3, 3, 3),  # no change
        (1, 3, 3, 3),  # one
        (3, 3, 2, 2),
        (3, 3, 3, 2),
        (1, 3, 2, 2),  # two
        (1, 3, 3, 2),
        (3, 3, 1, 2),
    }
    assert all(two_action.changes_of(s) <= 2 for s in found)
    assert set(two_action.schedules((1, 3), 5)) == {(3, 3), (1, 3)}


def test_a_schedule_is_priced_as_the_oracle_with_tc_asks_for_it() -> None:
    # Two minutes, passes every 15 s: with a 30 s lead the passes at 30 and 45 s ask for minute 1.
    spans = two_action.windows(2, 30.0, 120.0, 60.0, 15.0)
    assert spans == Counter({(0, 0): 2, (0, 1): 2, (1, 1): 4})
    assert two_action.price((1, 3), spans, 15.0) == 15.0 * (2 * 1 + 2 * 3 + 4 * 3)


def test_on_a_hand_made_two_peak_trace_two_changes_cost_more_than_the_oracle_with_tc() -> None:
    # A minute needs one unit with a request every 2 s and three with three every 2 s.
    one = [Request(float(t), 500, 5) for t in range(0, 60, 2)]
    three = [Request(float(t), 500, 5) for t in range(0, 60, 2) for _ in range(3)]

    def minute(m: int, requests: list[Request]) -> list[Request]:
        return [dataclasses.replace(r, arrival=r.arrival + 60.0 * m) for r in requests]

    shape = (one, three, one, one, three)
    trace = Trace("two peaks", tuple(r for m, rs in enumerate(shape) for r in minute(m, rs)), 300.0)
    best = oracle.oracle(trace, AHEAD, 1.0)
    assert best.units == (1, 3, 1, 1, 3)
    bound = two_action.cheapest(trace, AHEAD, best.units, 2)
    # Three units through minute 1 and down for minutes 2-3 (11 unit-minutes) beat going up once
    # and staying (13); following every minute (9) takes four changes.
    assert bound.levels == (3, 3, 1, 1, 3)
    two = summarize(bound.result, 1.0)
    tc = summarize(oracle.planned(trace, AHEAD, best), 1.0)
    assert two.slo_attainment == tc.slo_attainment == 1.0
    assert two.actions == 2
    assert two.gpu_hours > tc.gpu_hours
    # The price leaves the drains out: a floor under the replayed cost. 11 unit-minutes, and the
    # pass (15 s) before minute 4 holding its 2 more units, of 8 GPUs each.
    assert bound.priced_gpu_hours == (11 * 60 + 15 * 2) * 8 / 3600
    assert bound.priced_gpu_hours <= two.gpu_hours
    # Allowed as many changes as the oracle makes, it is the oracle with Tc.
    free = two_action.cheapest(trace, AHEAD, best.units, 4)
    assert free.levels == best.units
    assert summarize(free.result, 1.0).gpu_hours == tc.gpu_hours
