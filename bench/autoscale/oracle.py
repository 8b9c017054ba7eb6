"""The oracle: the fewest units each minute that meet the TTFT objective, found offline.

It sees the whole trace and runs the same capacity model, with two powers no real autoscaler has:
units are ready the moment it asks (no Pending delay, no cold start), and it picks each minute's
count by trying every count, smallest first, on a copy of the replay, keeping the first whose
requests arriving in that minute get their first token within the objective (at least
`attainment` of them). Minutes are chosen in order, each from the state the earlier ones left.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.replayer import Replayer, RunResult
from phalanx.autoscale.replay.trace import Trace
from phalanx.autoscale.types import Signals


@dataclass
class Fixed:
    """A scaler that asks for whatever count it is set to."""

    units: int
    period: float = 60.0

    def decide(self, signals: Signals, now: float) -> int:
        return self.units


@dataclass(frozen=True)
class Oracle:
    units: tuple[int, ...]  # per minute
    result: RunResult


def _met(replayer: Replayer, first: int, last: int, objective: float) -> tuple[int, int]:
    """Of requests first..last-1: how many got a first token within the objective, and how many."""
    requests = replayer.trace.requests
    met = 0
    for index in range(first, last):
        token = replayer.first_token[index]
        if token is not None and token - requests[index].arrival <= objective:
            met += 1
    return met, last - first


def oracle(
    trace: Trace,
    capacity: CapacityModel,
    objective: float,
    *,
    attainment: float = 0.95,
    step: float = 60.0,
    max_units: int = 64,
    tail: float = 900.0,
) -> Oracle:
    instant = dataclasses.replace(capacity, pending_delay=0.0, cold_start=0.0)
    scaler = Fixed(0, period=step)
    replayer = Replayer(trace, instant, scaler, initial_units=0)
    arrivals = [r.arrival for r in trace.requests]
    chosen: list[int] = []
    first = 0
    for minute in range(math.ceil(trace.duration / step)):
        end = (minute + 1) * step
        last = first
        while last < len(arrivals) and arrivals[last] < end:
            last += 1
        busy = last > first or replayer.queue or any(u.inflight for u in replayer.units if u.alive)
        units = max_units
        for candidate in range(1 if busy else 0, max_units + 1):
            twin = replayer.fork(Fixed(candidate, period=step))
            twin.advance(end + objective + 1e-6)
            met, count = _met(twin, first, last, objective)
            if count == 0 or met >= attainment * count:
                units = candidate
                break
        scaler.units = units
        replayer.advance(end)
        chosen.append(units)
        first = last
    replayer.advance(trace.duration + tail, stop_when_done=True)
    return Oracle(tuple(chosen), replayer.result())


@dataclass
class Ahead:
    """Asks, at each pass, for the most units any minute of the next `lead` seconds needs:
    a unit that minute m needs is asked for `lead` seconds before m begins, so it is ready then."""

    units: tuple[int, ...]  # per step
    lead: float
    step: float = 60.0
    period: float = 15.0

    def decide(self, signals: Signals, now: float) -> int:
        first = int(now // self.step)
        last = min(int((now + self.lead) // self.step), len(self.units) - 1)
        return max(self.units[min(first, len(self.units) - 1) : last + 1], default=0)


def planned(trace: Trace, capacity: CapacityModel, best: Oracle, *, step: float = 60.0) -> RunResult:
    """The oracle's minute-by-minute counts, started early on the real platform: it knows the
    future but obeys the Pending delay and cold start (Tc), and pays the GPU time of units while
    they start. Scale-down is at once (drained, as for every scaler)."""
    scaler = Ahead(best.units, capacity.startup, step)
    replayer = Replayer(trace, capacity, scaler, initial_units=scaler.decide(Signals(units=()), 0.0))
    replayer.advance(trace.duration)
    replayer.advance(trace.duration + 900.0, stop_when_done=True)
    return replayer.result()


@dataclass
class Behind:
    """Asks for the count the oracle chose for the minute `delay` seconds ago: the oracle's
    counts, known only once the load that needs them has arrived (as any online scaler), times
    `headroom` (rounded up)."""

    units: tuple[int, ...]  # per step
    delay: float
    step: float = 60.0
    period: float = 15.0
    headroom: float = 1.0

    def decide(self, signals: Signals, now: float) -> int:
        if not self.units:
            return 0
        count = self.units[min(int(max(0.0, now - self.delay) // self.step), len(self.units) - 1)]
        return math.ceil(count * self.headroom - 1e-9)


def late(
    trace: Trace, capacity: CapacityModel, best: Oracle, *, delay: float = 15.0, headroom: float = 1.0
) -> RunResult:
    """The oracle's counts applied `delay` seconds late on the real platform (Pending + Tc): what
    a scaler that knew the exact count the load needs, but not the future, would reach; with a
    `headroom` above 1, such a scaler that keeps that many times the count to drain what piles up
    while its units start."""
    scaler = Behind(best.units, delay, headroom=headroom)
    replayer = Replayer(trace, capacity, scaler, initial_units=best.units[0] if best.units else 0)
    replayer.advance(trace.duration)
    replayer.advance(trace.duration + 900.0, stop_when_done=True)
    return replayer.result()
