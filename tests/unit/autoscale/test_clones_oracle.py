"""The oracle: the fewest units per minute that meet the objective, on hand-sized traces."""

from __future__ import annotations

from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.trace import Request, Trace
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
