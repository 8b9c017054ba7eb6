"""The replayer on hand-made cases: every time and signal below is computed by hand from the
capacity model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from phalanx.autoscale.replay import traces
from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.metrics import unplaced_seconds
from phalanx.autoscale.replay.replayer import Replayer, UnitCount, replay
from phalanx.autoscale.replay.trace import Request, Trace
from phalanx.autoscale.types import Signals

# Round numbers: a 500-token prompt prefills in 0.5 s, 20 output tokens decode in 2 s.
MODEL = CapacityModel(
    slots=2,
    engine_queue=1,
    prefill_tokens_per_second=1000.0,
    decode_tokens_per_second=10.0,
    kv_tokens=10_000,
    gpus_per_unit=4,
    pending_delay=10.0,
    cold_start=20.0,
)


@dataclass
class Script:
    """Asks for `wants(now)` units every `period` seconds and keeps the signals it was shown."""

    wants: Callable[[float], int]
    period: float = 1.0
    seen: list[tuple[float, Signals]] = field(default_factory=list)

    def decide(self, signals: Signals, now: float) -> int:
        self.seen.append((now, signals))
        return self.wants(now)


def trace(*requests: tuple[float, int, int], duration: float = 100.0) -> Trace:
    return Trace("hand", tuple(Request(*r) for r in requests), duration)


def test_one_request_is_prefilled_then_decoded() -> None:
    result = replay(trace((1.0, 500, 20)), MODEL, Script(lambda _: 1))
    assert result.first_token == (1.5,)
    assert result.finished == (3.5,)
    assert result.ttft(0) == 0.5


def test_a_unit_prefills_one_prompt_at_a_time() -> None:
    # The second prompt waits for the first one's prefill (0.5 s), then takes 1 s itself.
    result = replay(trace((0.0, 500, 20), (0.1, 1000, 10)), MODEL, Script(lambda _: 1))
    assert result.first_token == (0.5, 1.5)
    assert result.finished == (2.5, 2.5)


def test_the_router_holds_requests_when_every_unit_is_full() -> None:
    model = CapacityModel(
        slots=1, engine_queue=0, prefill_tokens_per_second=1000.0, decode_tokens_per_second=10.0
    )
    result = replay(trace((0.0, 500, 20), (0.1, 500, 20)), model, Script(lambda _: 1))
    # The second one waits at the router until the first finishes at 2.5 s.
    assert result.first_token == (0.5, 3.0)
    assert result.finished == (2.5, 5.0)


def test_requests_go_to_the_unit_with_the_fewest_in_flight() -> None:
    result = replay(trace((0.0, 500, 20), (0.0, 500, 20)), MODEL, Script(lambda _: 2), initial_units=2)
    # One each: no prompt waits behind the other.
    assert result.first_token == (0.5, 0.5)


def test_a_new_unit_is_ready_after_the_pending_delay_and_the_cold_start() -> None:
    result = replay(trace(duration=60.0), MODEL, Script(lambda now: 2 if now >= 5 else 1))
    assert result.counts[:2] == (UnitCount(0.0, 1, 1, 1), UnitCount(5.0, 2, 1, 2))
    assert UnitCount(35.0, 2, 2, 2) in result.counts  # 5 + 10 (Pending) + 20 (Tc)


def test_a_unit_beyond_the_platform_cap_stays_pending_and_holds_no_gpu() -> None:
    capped = CapacityModel(**{**MODEL.__dict__, "max_units": 1})
    scaler = Script(lambda _: 2)
    result = replay(trace(duration=100.0), capped, scaler)
    assert [(c.current, c.ready, c.held) for c in result.counts] == [(2, 1, 1)]  # asked for at 0 s
    signals = scaler.seen[-1][1]
    assert signals.placeable == 0
    pending = [u for u in signals.units if not u.ready]
    assert [(u.pending_since, u.inflight) for u in pending] == [(0.0, None)]


def test_a_pending_unit_is_placed_when_a_draining_unit_gives_its_gpus_back() -> None:
    capped = CapacityModel(**{**MODEL.__dict__, "max_units": 1})
    # The only unit drains from 1 s (its request finishes at 20.5 s); a new one is asked for at 2 s
    # and can only be placed once the draining unit is gone.
    script = Script(lambda now: 0 if 1 <= now < 2 else 1)
    result = replay(trace((0.0, 500, 200), duration=100.0), capped, script)
    assert result.counts == (
        UnitCount(0.0, 1, 1, 1),
        UnitCount(1.0, 0, 0, 1),
        UnitCount(2.0, 1, 0, 1, unplaced=1),
        UnitCount(20.5, 1, 0, 1),  # placed when the draining unit is gone...
        UnitCount(50.5, 1, 1, 1),  # ...and ready 30 s later
    )
    assert unplaced_seconds(result) == 18.5


def test_scale_down_drains_a_unit_without_losing_its_requests() -> None:
    script = Script(lambda now: 0 if now >= 1 else 1)
    result = replay(
        trace((0.0, 500, 20), (0.5, 500, 20), (5.0, 500, 20), duration=10.0), MODEL, script, tail=5.0
    )
    # Both requests in flight at 1 s are finished by the draining unit; the one arriving after it is
    # gone is held at the router and reported unserved when the replay stops.
    assert result.finished == (2.5, 3.0, None)
    assert result.unserved == 1
    assert UnitCount(3.0, 0, 0, 0) in result.counts  # removed when its last request finished
    assert script.seen[-1][1].admission_queue == 1


def test_a_draining_unit_takes_no_new_request() -> None:
    # Unit 1 (idle, newest) is removed at once; unit 0 drains its request; the later arrival goes
    # to the unit started at 1 s only when that one is ready (31 s).
    script = Script(lambda now: 2 if now < 1 else 1, period=1.0)
    result = replay(trace((0.0, 500, 20), (0.6, 500, 20), duration=60.0), MODEL, script, initial_units=2)
    assert result.first_token == (0.5, 1.1)
    scaler = Script(lambda now: 0 if 1 <= now < 2 else 1)
    later = replay(trace((0.0, 500, 20), (1.5, 500, 20), duration=60.0), MODEL, scaler)
    assert later.first_token == (0.5, 32.5)  # new unit asked at 2, ready at 32


def test_zero_units_hold_every_request_and_report_all_of_them() -> None:
    result = replay(traces.step(duration=120.0, at=60.0), MODEL, Script(lambda _: 0), initial_units=0)
    assert result.unserved == len(result.trace.requests) > 0
    assert result.served == 0


def test_every_request_is_served_or_reported_under_churn() -> None:
    # A scaler that swings between 0 and 5 units every 20 s, with a cap of 3 units.
    capped = CapacityModel(**{**MODEL.__dict__, "max_units": 3, "slots": 4})
    result = replay(
        traces.sine(period=300.0, cycles=1, high=6.0), capped, Script(lambda now: int(now // 20) % 6)
    )
    requests = result.trace.requests
    assert result.served + result.unserved == len(requests)
    for index, request in enumerate(requests):
        first, done = result.first_token[index], result.finished[index]
        if done is not None:
            assert first is not None
            assert request.arrival <= first <= done
    assert max(c.held for c in result.counts) <= 3


def test_signals_of_a_hand_made_moment() -> None:
    # One unit, slots 2 + engine queue 1: five requests at 0 s fill the batch (2), the engine
    # queue (1), and two wait at the router. Seen at 1.0 s by a scaler passing every 1 s.
    scaler = Script(lambda _: 1)
    five = [(0.0, 500, 20)] * 5
    replayer = Replayer(trace(*five, duration=10.0), MODEL, scaler, signal_window=60.0)
    replayer.advance(1.0 + 1e-9)
    now, signals = scaler.seen[-1]
    assert now == 1.0
    (unit,) = signals.units
    assert (unit.ready, unit.draining, unit.queue, unit.inflight, unit.waiting, unit.running) == (
        True,
        False,
        2.0,
        3.0,
        1.0,
        2.0,
    )
    # First prompt done at 0.5 s (5 tokens decoded by 1.0 s), second at 1.0 s (none yet).
    assert unit.kv_usage == pytest.approx((505 + 500) / 10_000)
    assert unit.ttft_p95 == 1.0  # ttfts 0.5 and 1.0; nearest rank
    assert unit.tokens_per_second == 0.0  # nothing finished yet
    assert signals.admission_queue == 0
    assert signals.demand_tokens_per_second == pytest.approx(5 * 520 / 1.0)
    assert signals.placeable is None


def test_measured_tokens_per_second_and_the_window() -> None:
    scaler = Script(lambda _: 1, period=10.0)
    replayer = Replayer(trace((0.0, 500, 20), duration=100.0), MODEL, scaler, signal_window=5.0)
    replayer.advance(20.5)
    tokens = [s.units[0].tokens_per_second for _, s in scaler.seen]
    # At 10 s: 520 tokens finished at 2.5 s, outside the 5 s window (5, 10]: 0.
    assert tokens == [None, 0.0, 0.0]
    demand = [s.demand_tokens_per_second for _, s in scaler.seen]
    assert demand == [None, 0.0, 0.0]
    early = Script(lambda _: 1, period=3.0)
    replay(trace((0.0, 500, 20), duration=4.0), MODEL, early, signal_window=5.0)
    assert early.seen[1][1].units[0].tokens_per_second == pytest.approx(520 / 3.0)
    assert early.seen[1][1].demand_tokens_per_second == pytest.approx(520 / 3.0)


def test_a_replay_is_deterministic_and_a_fork_does_not_touch_its_origin() -> None:
    def run() -> object:
        return replay(traces.steady(duration=300.0), MODEL, Script(lambda now: 1 + int(now // 60) % 3))

    assert run() == run()
    replayer = Replayer(traces.steady(duration=300.0), MODEL, Script(lambda _: 1))
    replayer.advance(100.0)
    before = replayer.result()
    twin = replayer.fork(Script(lambda _: 4))
    twin.advance(300.0)
    assert replayer.result() == before
    assert twin.result().counts != before.counts


def test_a_bad_capacity_model_names_every_problem() -> None:
    with pytest.raises(ValueError, match="slots must be >= 1, got 0; decode_tokens_per_second must be > 0"):
        CapacityModel(slots=0, decode_tokens_per_second=0.0)
