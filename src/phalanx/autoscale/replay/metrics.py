"""The figures of one run: cost, objective attainment, how fast and how calmly the scaler acted."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from phalanx.autoscale.replay.replayer import Pass, RunResult, UnitCount, p95


def _count_at(counts: tuple[UnitCount, ...], time: float) -> UnitCount:
    """The unit counts in effect at `time`."""
    current = counts[0]
    for entry in counts:
        if entry.time > time:
            break
        current = entry
    return current


def _integral(counts: tuple[UnitCount, ...], start: float, end: float, what: str) -> float:
    """Unit-seconds of `what` (current, ready or held) over [start, end)."""
    total = 0.0
    for entry, following in zip(counts, [*counts[1:], None], strict=True):
        left = max(entry.time, start)
        right = min(following.time if following else end, end)
        if right > left:
            total += getattr(entry, what) * (right - left)
    return total


def seconds_where(result: RunResult, test: Callable[[UnitCount], bool], until: float | None = None) -> float:
    """Seconds of the trace in which the unit counts passed `test`."""
    end = result.trace.duration if until is None else until
    total = 0.0
    for entry, following in zip(result.counts, [*result.counts[1:], None], strict=True):
        if test(entry):
            total += max(0.0, min(following.time if following else end, end) - entry.time)
    return total


def unplaced_seconds(result: RunResult, until: float | None = None) -> float:
    """Seconds in which the scaler asked for units the platform could not place."""
    return seconds_where(result, lambda c: c.unplaced > 0, until)


def zero_seconds(result: RunResult, until: float | None = None) -> float:
    """Seconds with no unit at all (scaled to zero)."""
    return seconds_where(result, lambda c: c.current == 0 and c.held == 0, until)


def gpu_hours(result: RunResult, until: float | None = None) -> float:
    """GPUs held (starting, ready and draining units) times hours, from 0 to the trace's end."""
    end = result.trace.duration if until is None else until
    return _integral(result.counts, 0.0, end, "held") * result.capacity.gpus_per_unit / 3600


def slo_attainment(result: RunResult, objective: float) -> float:
    """Share of requests whose time to first token was within `objective` (unserved ones miss)."""
    n = len(result.trace.requests)
    met = sum(1 for i in range(n) if (t := result.ttft(i)) is not None and t <= objective)
    return met / n if n else 1.0


def peak_units(result: RunResult, until: float | None = None) -> int:
    end = result.trace.duration if until is None else until
    return max(c.current for c in result.counts if c.time < end or c is result.counts[0])


def actions(result: RunResult) -> list[Pass]:
    """The passes that changed the count."""
    return [p for p in result.passes if p.desired != p.current]


def direction_changes(result: RunResult) -> int:
    """How often an action went the other way from the action before it."""
    ups = [p.desired > p.current for p in actions(result)]
    return sum(1 for a, b in itertools.pairwise(ups) if a != b)


def decision_time(result: RunResult, at: float) -> float | None:
    """Seconds from `at` to the first pass that asked for more units; None: none did."""
    return next((p.time - at for p in result.passes if p.time >= at and p.desired > p.current), None)


def capacity_back(result: RunResult, at: float, need: int) -> float | None:
    """Seconds from `at` until at least `need` units were ready; None: never."""
    if _count_at(result.counts, at).ready >= need:
        return 0.0
    return next((c.time - at for c in result.counts if c.time > at and c.ready >= need), None)


@dataclass(frozen=True)
class Minute:
    start: float
    arrivals: int
    attainment: float | None  # of the requests that arrived in this minute
    ttft_p95: float | None
    units_mean: float  # not draining, time-weighted
    units_max: int
    ready_mean: float
    gpu_hours: float


def timeline(result: RunResult, objective: float, step: float = 60.0) -> list[Minute]:
    """Per `step` seconds of the trace: what arrived, how it was served and the units there were."""
    requests = result.trace.requests
    rows = []
    start = 0.0
    index = 0
    while start < result.trace.duration:
        end = start + step
        ttfts: list[float | None] = []
        while index < len(requests) and requests[index].arrival < end:
            ttfts.append(result.ttft(index))
            index += 1
        known = [t for t in ttfts if t is not None]
        in_minute = [c.current for c in result.counts if start < c.time < end]
        rows.append(
            Minute(
                start=start,
                arrivals=len(ttfts),
                attainment=(sum(1 for t in known if t <= objective) / len(ttfts)) if ttfts else None,
                ttft_p95=p95(known),
                units_mean=_integral(result.counts, start, end, "current") / step,
                units_max=max([_count_at(result.counts, start).current, *in_minute]),
                ready_mean=_integral(result.counts, start, end, "ready") / step,
                gpu_hours=_integral(result.counts, start, end, "held") * result.capacity.gpus_per_unit / 3600,
            )
        )
        start = end
    return rows


@dataclass(frozen=True)
class RunMetrics:
    requests: int
    served: int
    unserved: int
    dropped: int  # arrived and neither served nor reported unserved: must be 0
    slo_attainment: float
    gpu_hours: float
    peak_units: int
    actions: int
    direction_changes: int


def summarize(result: RunResult, objective: float) -> RunMetrics:
    n = len(result.trace.requests)
    return RunMetrics(
        requests=n,
        served=result.served,
        unserved=result.unserved,
        dropped=n - result.served - result.unserved,
        slo_attainment=slo_attainment(result, objective),
        gpu_hours=gpu_hours(result),
        peak_units=peak_units(result),
        actions=len(actions(result)),
        direction_changes=direction_changes(result),
    )
