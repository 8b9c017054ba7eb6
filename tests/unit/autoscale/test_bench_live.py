"""The live run's figures (bench/autoscale/live.py), from hand-made samples, outcomes and decision
records: the groups a rate needs, how long groups took to become ready, the share within the
objective and the requests that arrived at zero groups."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest

from phalanx.autoscale.replay.capacity import CapacityModel
from tests.unit.autoscale.test_bench_run import load_bench

live = load_bench("live")
# live.py imports these from bench/pd, as when it is run.
Outcome = sys.modules["openloop"].Outcome
Request = sys.modules["workload"].Request


def test_the_groups_a_rate_needs_by_littles_law() -> None:
    # 64 prompt tokens at 64/s and 40 output tokens at 20/s: 3 s a request; 4 slots a group.
    model = CapacityModel(slots=4, prefill_tokens_per_second=64.0, decode_tokens_per_second=20.0)
    assert live.need_for(0.0, model) == 0
    assert live.need_for(1.0, model) == 1  # 3 requests at once
    assert live.need_for(4.0 / 3.0, model) == 1  # exactly 4: one full group
    assert live.need_for(2.0, model) == 2  # 6 at once
    seconds = model.prefill_seconds(live.PROMPT_TOKENS) + model.decode_seconds(live.OUTPUT_TOKENS)
    assert live.need_for(10.0, model) == math.ceil(10.0 * seconds / model.slots) == 8


def sample(t: float, replicas: int, ready: int) -> Any:
    return live.Sample(t=t, replicas=replicas, ready=ready, pods=ready)


def test_startup_is_measured_from_each_rise_of_the_count_to_that_many_ready() -> None:
    samples = [
        sample(0, 0, 0),
        sample(1, 1, 0),  # asked for 1
        sample(2, 1, 0),
        sample(5, 1, 1),  # ready 4 s later
        sample(6, 3, 1),  # asked for 3
        sample(7, 4, 1),  # and 4
        sample(9, 4, 3),  # 3 ready: 3 s after the count rose to 3
        sample(12, 4, 4),  # 4 ready: 5 s after it rose to 4
        sample(13, 2, 2),  # going down is no startup
        sample(14, 5, 2),  # never ready before the run ended: not counted
    ]
    assert live.startup_seconds(samples) == [4, 3, 5]
    assert live.startup_seconds([]) == []


def outcome(arrival: float, ttft: float | None, error: str = "") -> Any:
    done = Outcome(Request(0, arrival, 64, 40), ttft_s=ttft, error=error)
    done.latency_s = None if ttft is None else ttft + 1.0
    return done


def test_the_share_within_the_objective_counts_every_request_that_arrived() -> None:
    outcomes = [
        outcome(0.0, 0.5),
        outcome(1.0, live.OBJECTIVE),  # on the objective: within
        outcome(2.0, live.OBJECTIVE + 0.01),
        outcome(3.0, 0.2, error="HTTP 503"),  # lost: never within
    ]
    assert live.share_within(outcomes) == pytest.approx(0.5)
    assert live.share_within([]) is None
    assert [o.request.arrival_s for o in live.within(outcomes, 1.0, 3.0)] == [1.0, 2.0]  # [start, end)


def test_from_zero_times_the_first_decision_from_zero_and_the_held_requests() -> None:
    outcomes = [outcome(99.0, 0.3), outcome(100.0, 6.0), outcome(101.0, 5.5), outcome(104.0, None, "timeout")]
    history = [
        {"t": 40.0, "previous": 0, "desired": 1},  # an earlier start from zero: before the window
        {"t": 101.5, "previous": 1, "desired": 0},
        {"t": 102.0, "previous": 0, "desired": 1},
        {"t": 103.0, "previous": 0, "desired": 1},
    ]
    figures = live.from_zero(outcomes, history, 100.0, 110.0)
    assert figures == {
        "at_s": 100.0,
        "requests": 3,
        "dropped": 1,
        "decision_s": 2.0,
        "ttft_max_s": 6.0,
        "within_objective": 0.0,
    }
    nothing = live.from_zero(outcomes, [], 200.0, 210.0)
    assert (nothing["requests"], nothing["decision_s"], nothing["ttft_max_s"]) == (0, None, None)
    assert nothing["within_objective"] is None
