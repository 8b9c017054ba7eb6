"""The replayer: a discrete-event simulation of a router and its units on a virtual clock.

Requests arrive from a trace and wait at the router, first come first served, until a ready unit
that is not draining has room (see `CapacityModel`); the router sends each to the unit with the
fewest requests in flight. Every `scaler.period` seconds the replayer builds the `Signals` of that
moment and asks the scaler for a desired count, then carries it out: new units are Pending until
the platform can place them, then take `pending_delay + cold_start` to become ready; removed
units drain (they take nothing new and finish what they hold). Nothing is dropped: a request not
finished when the replay stops is reported unserved.

Events at the same instant run in a fixed order (finishes, units becoming ready, arrivals, the
scaler's pass), so a run depends on nothing but its inputs.
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.trace import Trace
from phalanx.autoscale.types import Signals, UnitSignals

_FINISH, _READY, _ARRIVAL, _PASS = 0, 1, 2, 3


class Scaler(Protocol):
    """Anything that turns the signals of one pass into a desired number of units."""

    @property
    def period(self) -> float: ...

    def decide(self, signals: Signals, now: float) -> int: ...


@dataclass(frozen=True)
class Pass:
    """One pass of the scaler: the units not draining before it, and what it asked for."""

    time: float
    current: int
    desired: int


@dataclass(frozen=True)
class UnitCount:
    """The units from `time` until the next entry."""

    time: float
    current: int  # not draining (pending, starting or ready)
    ready: int  # ready and not draining
    held: int  # holding GPUs: placed and not yet removed (starting, ready or draining)
    unplaced: int = 0  # asked for, but the platform has no room for them: Pending, holding nothing


@dataclass(frozen=True)
class RunResult:
    trace: Trace
    capacity: CapacityModel
    end: float  # when the replay stopped
    first_token: tuple[float | None, ...]  # per request, None: never got one
    finished: tuple[float | None, ...]  # per request, None: unserved
    passes: tuple[Pass, ...]
    counts: tuple[UnitCount, ...]

    @property
    def unserved(self) -> int:
        return sum(1 for f in self.finished if f is None)

    @property
    def served(self) -> int:
        return len(self.finished) - self.unserved

    def ttft(self, index: int) -> float | None:
        first = self.first_token[index]
        return None if first is None else first - self.trace.requests[index].arrival


@dataclass
class _Unit:
    position: int  # in the replayer's list of units
    created: float
    placed: float | None = None
    ready_at: float | None = None
    ready: bool = False
    draining: bool = False
    removed: float | None = None
    prefill_free: float = 0.0
    waiting: deque[int] = field(default_factory=deque)
    running: dict[int, tuple[float, float]] = field(default_factory=dict)  # request: first token, finish
    first_tokens: deque[tuple[float, float]] = field(default_factory=deque)  # time, ttft
    served_tokens: deque[tuple[float, int]] = field(default_factory=deque)  # finish time, tokens
    # finish time, seconds the request held a batch slot (joined the batch to finished)
    slot_seconds: deque[tuple[float, float]] = field(default_factory=deque)

    @property
    def name(self) -> str:
        return f"unit-{self.position}"

    @property
    def inflight(self) -> int:
        return len(self.waiting) + len(self.running)

    @property
    def alive(self) -> bool:
        return self.removed is None


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class Replayer:
    def __init__(
        self,
        trace: Trace,
        capacity: CapacityModel,
        scaler: Scaler,
        *,
        initial_units: int = 1,
        signal_window: float = 60.0,
    ) -> None:
        if scaler.period <= 0:
            raise ValueError(f"scaler period must be > 0, got {scaler.period}")
        self.trace = trace
        self.capacity = capacity
        self.scaler = scaler
        self.window = signal_window
        self.now = 0.0
        self.units: list[_Unit] = []
        self.queue: deque[int] = deque()
        self.events: list[tuple[float, int, int, int, int]] = []  # time, kind, seq, unit, request
        self.seq = 0
        self.next_arrival = 0
        self.next_pass = 0.0
        self.first_token: list[float | None] = [None] * len(trace.requests)
        self.finished: list[float | None] = [None] * len(trace.requests)
        self.done = 0
        self.arrived_tokens: deque[tuple[float, int]] = deque()
        self.passes: list[Pass] = []
        self.counts: list[UnitCount] = []
        for _ in range(initial_units):
            unit = self._new_unit()
            unit.placed = unit.ready_at = 0.0
            unit.ready = True
        self._log_counts()

    # --- the event loop -------------------------------------------------------------------------

    def advance(self, until: float, *, stop_when_done: bool = False) -> None:
        """Run every event before `until` (stop early once all requests have finished, if asked)."""
        requests = self.trace.requests
        while True:
            if stop_when_done and self.done == len(requests):
                return
            candidates = [(self.next_pass, _PASS)]
            if self.next_arrival < len(requests):
                candidates.append((requests[self.next_arrival].arrival, _ARRIVAL))
            if self.events:
                candidates.append((self.events[0][0], self.events[0][1]))
            time, kind = min(candidates)
            if time >= until:
                return
            self.now = time
            if kind == _PASS:
                self._pass()
            elif kind == _ARRIVAL:
                self._arrive()
            else:
                _, _, _, unit, request = heapq.heappop(self.events)
                if kind == _FINISH:
                    self._finish(self.units[unit], request)
                else:
                    self._become_ready(self.units[unit])

    def result(self) -> RunResult:
        return RunResult(
            trace=self.trace,
            capacity=self.capacity,
            end=self.now,
            first_token=tuple(self.first_token),
            finished=tuple(self.finished),
            passes=tuple(self.passes),
            counts=tuple(self.counts),
        )

    def fork(self, scaler: Scaler) -> Replayer:
        """An independent copy of this replay from now on, asking `scaler` (the trace is shared)."""
        twin = copy.copy(self)
        twin.scaler = scaler
        twin.units = copy.deepcopy(self.units)
        twin.queue = self.queue.copy()
        twin.events = list(self.events)
        twin.first_token = list(self.first_token)
        twin.finished = list(self.finished)
        twin.arrived_tokens = self.arrived_tokens.copy()
        twin.passes = list(self.passes)
        twin.counts = list(self.counts)
        return twin

    # --- requests -------------------------------------------------------------------------------

    def _arrive(self) -> None:
        index = self.next_arrival
        self.next_arrival += 1
        request = self.trace.requests[index]
        self.arrived_tokens.append((self.now, request.prompt_tokens + request.output_tokens))
        self.queue.append(index)
        self._dispatch()

    def _dispatch(self) -> None:
        room = self.capacity.slots + self.capacity.engine_queue
        while self.queue:
            open_units = [u for u in self._open_units() if u.inflight < room]
            if not open_units:
                return
            unit = min(open_units, key=lambda u: u.inflight)  # the first of equals: a stable order
            unit.waiting.append(self.queue.popleft())
            self._fill(unit)

    def _fill(self, unit: _Unit) -> None:
        """Move requests from the unit's queue into its batch while it has free slots."""
        while unit.waiting and len(unit.running) < self.capacity.slots:
            index = unit.waiting.popleft()
            request = self.trace.requests[index]
            start = max(self.now, unit.prefill_free)
            first = start + self.capacity.prefill_seconds(request.prompt_tokens)
            unit.prefill_free = first
            finish = first + self.capacity.decode_seconds(request.output_tokens)
            unit.running[index] = (first, finish)
            unit.slot_seconds.append((finish, finish - self.now))
            self.first_token[index] = first
            unit.first_tokens.append((first, first - request.arrival))
            self._push(finish, _FINISH, unit.position, index)

    def _finish(self, unit: _Unit, index: int) -> None:
        del unit.running[index]
        self.finished[index] = self.now
        self.done += 1
        request = self.trace.requests[index]
        unit.served_tokens.append((self.now, request.prompt_tokens + request.output_tokens))
        self._fill(unit)
        if unit.draining and unit.inflight == 0:
            self._remove(unit)
        self._dispatch()

    # --- units ----------------------------------------------------------------------------------

    def _new_unit(self) -> _Unit:
        unit = _Unit(position=len(self.units), created=self.now)
        self.units.append(unit)
        return unit

    def _open_units(self) -> list[_Unit]:
        """The units the router may send to: ready and not draining."""
        return [u for u in self.units if u.alive and u.ready and not u.draining]

    def _held(self) -> int:
        return sum(1 for u in self.units if u.alive and u.placed is not None)

    def _place(self) -> None:
        """Place Pending units, oldest first, while the platform has room for them."""
        cap = self.capacity.max_units
        for unit in self.units:
            if unit.alive and unit.placed is None and (cap is None or self._held() < cap):
                unit.placed = self.now
                unit.ready_at = self.now + self.capacity.startup
                self._push(unit.ready_at, _READY, unit.position, -1)

    def _become_ready(self, unit: _Unit) -> None:
        if not unit.alive:
            return  # removed while it was starting
        unit.ready = True
        self._log_counts()
        self._dispatch()

    def _remove(self, unit: _Unit) -> None:
        unit.removed = self.now
        self._place()
        self._log_counts()

    def _scale(self, desired: int) -> None:
        active = [u for u in self.units if u.alive and not u.draining]
        if desired > len(active):
            for _ in range(desired - len(active)):
                self._new_unit()
            self._place()
        elif desired < len(active):
            # Cheapest first: never placed, then still starting (newest first), then the ready
            # unit with the least work (newest first on a tie).
            def cost(pair: tuple[int, _Unit]) -> tuple[int, int, int]:
                position, unit = pair
                stage = 0 if unit.placed is None else 1 if not unit.ready else 2
                return (stage, unit.inflight if unit.ready else 0, -position)

            for _, unit in sorted(enumerate(active), key=cost)[: len(active) - desired]:
                unit.draining = True
                if not unit.ready or unit.inflight == 0:
                    self._remove(unit)
        self._log_counts()

    # --- the scaler's pass ----------------------------------------------------------------------

    def _pass(self) -> None:
        signals = self.signals()
        current = sum(1 for u in self.units if u.alive and not u.draining)
        desired = max(0, self.scaler.decide(signals, self.now))
        self.passes.append(Pass(self.now, current, desired))
        if desired != current:
            self._scale(desired)
        self.next_pass = self.now + self.scaler.period

    def signals(self) -> Signals:
        """The signals of this instant, as the router and the units' engines would report them."""
        now, start = self.now, self.now - self.window
        open_units = self._open_units()
        share = len(self.queue) / len(open_units) if open_units else 0.0
        while self.arrived_tokens and self.arrived_tokens[0][0] <= start:
            self.arrived_tokens.popleft()
        span = min(self.window, now)
        demand = sum(t for _, t in self.arrived_tokens) / span if span > 0 else None
        arrivals = len(self.arrived_tokens) / span if span > 0 else None
        units = []
        for unit in self.units:
            if not unit.alive:
                continue
            if not unit.ready:
                units.append(UnitSignals(name=unit.name, ready=False, pending_since=unit.created))
                continue
            while unit.first_tokens and unit.first_tokens[0][0] <= start:
                unit.first_tokens.popleft()
            while unit.served_tokens and unit.served_tokens[0][0] <= start:
                unit.served_tokens.popleft()
            while unit.slot_seconds and unit.slot_seconds[0][0] <= start:
                unit.slot_seconds.popleft()
            in_batch = [seconds for finish, seconds in unit.slot_seconds if finish <= now]
            ttfts = [ttft for time, ttft in unit.first_tokens if time <= now]
            served_for = min(self.window, now - (unit.ready_at or 0.0))
            units.append(
                UnitSignals(
                    name=unit.name,
                    ready=True,
                    draining=unit.draining,
                    queue=0.0 if unit.draining else share,
                    inflight=float(unit.inflight),
                    waiting=float(len(unit.waiting)),
                    running=float(len(unit.running)),
                    kv_usage=self._kv_usage(unit),
                    ttft_p95=p95(ttfts),
                    request_seconds=sum(in_batch) / len(in_batch) if in_batch else None,
                    tokens_per_second=(
                        sum(t for _, t in unit.served_tokens) / served_for if served_for > 0 else None
                    ),
                )
            )
        held = self._held()
        cap = self.capacity.max_units
        return Signals(
            units=tuple(units),
            admission_queue=0 if open_units else len(self.queue),
            demand_tokens_per_second=demand,
            demand_requests_per_second=arrivals,
            placeable=None if cap is None else max(0, cap - held),
            max_running=self.capacity.slots,
            startup_seconds=self.capacity.startup,
        )

    def _kv_usage(self, unit: _Unit) -> float:
        """KV tokens held by the batch (prompt, plus output decoded so far) over the unit's cache."""
        rate = self.capacity.decode_tokens_per_second
        held = 0.0
        for index, (first, _) in unit.running.items():
            request = self.trace.requests[index]
            if first <= self.now:
                held += request.prompt_tokens + min(request.output_tokens, (self.now - first) * rate)
        return min(1.0, held / self.capacity.kv_tokens)

    # --- bookkeeping ----------------------------------------------------------------------------

    def _push(self, time: float, kind: int, unit: int, request: int) -> None:
        heapq.heappush(self.events, (time, kind, self.seq, unit, request))
        self.seq += 1

    def _log_counts(self) -> None:
        current = sum(1 for u in self.units if u.alive and not u.draining)
        ready = sum(1 for u in self.units if u.alive and u.ready and not u.draining)
        unplaced = sum(1 for u in self.units if u.alive and u.placed is None)
        entry = UnitCount(self.now, current, ready, self._held(), unplaced)
        if self.counts and self.counts[-1].time == self.now:
            self.counts[-1] = entry
        elif not self.counts or dataclasses.replace(self.counts[-1], time=self.now) != entry:
            self.counts.append(entry)


def replay(
    trace: Trace,
    capacity: CapacityModel,
    scaler: Scaler,
    *,
    initial_units: int = 1,
    signal_window: float = 60.0,
    tail: float = 900.0,
) -> RunResult:
    """Replay `trace`, then keep going (at most `tail` seconds) until every request has finished."""
    replayer = Replayer(trace, capacity, scaler, initial_units=initial_units, signal_window=signal_window)
    replayer.advance(trace.duration)
    replayer.advance(trace.duration + tail, stop_when_done=True)
    return replayer.result()
