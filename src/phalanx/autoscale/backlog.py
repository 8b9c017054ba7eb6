"""What the demand needs, from the arrival rate and the learned capacity (Little's law in rates),
and how many more units drain a backlog within the policy's horizon.

A backlog (requests the router holds, requests waiting in engines) is work that arrived while the
units could not take it: it is done once, not every second. Read through the ratio rule it looks
like steady load (800 requests at 11 per unit asks for 72 units); here it asks for the fewest
units that finish it within `backlog_horizon` seconds of when a unit asked for now is ready, at
the rate one unit completes requests (its capacity over the tokens per request): the backlog grows
until then by what arrives beyond what the ready units serve, and the units already starting serve
it from when each is ready, so they are not asked for twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from phalanx.autoscale.capacity import is_saturated
from phalanx.autoscale.recommend import number
from phalanx.autoscale.types import Signals, UnitSignals


@dataclass(frozen=True)
class Need:
    steady: float  # units the arrival rate needs at the planned utilization
    backlog: float  # requests held at the router or waiting in engines now
    # Units more than `steady` that, with what the units ready and starting serve, finish the
    # backlog (and what piles up until the units asked for are ready) within the horizon.
    drain: float
    horizon: float

    @property
    def units(self) -> int:
        return math.ceil(self.steady + self.drain - 1e-9)

    def text(self, unit: str) -> str:
        return (
            f"the demand needs {number(self.steady)} and the backlog of {number(self.backlog)} "
            f"requests {number(self.drain)} more to drain within {number(self.horizon)} s of when "
            f"a {unit} asked for now is ready: {self.units}"
        )


def backlog_requests(live: Sequence[UnitSignals], signals: Signals) -> float:
    """Requests not being served: held at the router (admission queue included) or waiting in an
    engine. Unknown values count 0: the backlog only ever raises a cap, never lowers a count."""
    held = sum(u.queue or 0.0 for u in live if u.ready) + signals.admission_queue
    return held + sum(u.waiting or 0.0 for u in live if u.ready)


# How far beyond the arrivals' noise the backlog must grow between passes to show the rate: 3
# kept the benchmark's bursts out (39.7% within the objective, 45.8% at 2), 1 or 2 keep Azure's
# brief queue out as well as 3 (bench/autoscale/results.md).
GROWTH_SIGMAS = 2.0


def seen_arrivals(
    previous: tuple[float, float] | None,
    backlog: float,
    live: Sequence[UnitSignals],
    now: float,
    requests: float,
    per_unit: float,
) -> float | None:
    """The arrival rate (requests per second) without the router's rate window's lag: what the
    backlog grew by since the last pass (`previous`: its time and size then), plus what the ready
    units serve (`per_unit` requests per second each, their capacity at 100%). Only while every
    ready unit has requests waiting (each then serves its capacity) and the backlog grew by more
    than GROWTH_SIGMAS times the Poisson noise of what arrives between passes at the router's
    rate (`requests`): a brief queue of a few requests does not show a new rate. None otherwise."""
    if previous is None:
        return None
    then, before = previous
    span = now - then
    ready = [u for u in live if u.ready]
    if span <= 0 or not ready or not all(is_saturated(u) for u in ready):
        return None
    grown = backlog - before
    if grown <= GROWTH_SIGMAS * math.sqrt(max(requests, 0.0) * span):
        return None
    return grown / span + len(ready) * per_unit


def learn_startup(
    previous: float | None, starting: Sequence[tuple[str, float]], live: Sequence[UnitSignals], now: float
) -> float | None:
    """The latest startup seen: a unit that was starting at the last pass and is ready now took
    at most `now - pending_since` (the longest of this pass's, so the estimate leans long)."""
    ready = {u.name for u in live if u.ready}
    samples = [now - since for name, since in starting if name in ready]
    return max(samples) if samples else previous


def lead_time(
    startup: float | None, live: Sequence[UnitSignals], now: float, known: float | None = None
) -> float:
    """How far ahead a unit asked for now serves: the learned startup; before one is learned, the
    longest of the startup the platform reports for the ready units (`known`) and what any unit
    now starting has already taken (it takes at least that), else 0."""
    if startup is not None:
        return startup
    waited = [now - u.pending_since for u in live if not u.ready and u.pending_since is not None]
    return max([*waited, *([known] if known is not None else [])], default=0.0)


TREND = 60.0  # seconds between the two arrival rates whose difference is the demand's rise
SPANS = 3  # consecutive TREND spans that must all rise for the rise to be a trend, not a step
# An accelerating trend's oldest span gains at least 1/SMOOTH of the middle one's.
SMOOTH = 3.0


def keep_demand(
    samples: Sequence[tuple[float, float]], now: float, requests: float | None
) -> tuple[tuple[float, float], ...]:
    """This pass's arrival rate added; those of the last SPANS x TREND seconds kept, and the
    newest older one."""
    every = [*samples, (now, requests)] if requests is not None else list(samples)
    older = [s for s in every if s[0] < now - SPANS * TREND]
    return tuple(older[-1:] + [s for s in every if s[0] >= now - SPANS * TREND])


def rise(samples: Sequence[tuple[float, float]], now: float, requests: float, over: float) -> float:
    """How much the arrival rate (requests per second) gains in the next `over` seconds, at the
    pace it gained since the rate at least TREND seconds ago, and never more than it gained then:
    a step seen through a rate window looks like a ramp for a window's length, and must not be
    extrapolated as one. A rise that lasted SPANS spans is a trend, not a step: it is extrapolated
    over the whole of `over` at its slowest span's pace, and with its acceleration while it
    accelerates beyond the noise. 0 when it falls or no rate that old is known (a falling demand
    is the windows' business)."""
    then = [s for s in samples if s[0] <= now - TREND]
    if not then:
        return 0.0
    time, rate = then[-1]
    gained = max(0.0, requests - rate)
    trend = sustained(samples, now, requests) * over
    return max(min(gained, gained / (now - time) * over), trend, accelerating(samples, now, requests, over))


def span_gains(
    samples: Sequence[tuple[float, float]], now: float, requests: float
) -> tuple[float, float, float] | None:
    """What the arrival rate gained over each of the last SPANS TREND-long spans, newest first;
    None when no rate that old is known."""
    rates = [requests]
    for k in range(1, SPANS + 1):
        then = [s for s in samples if s[0] <= now - k * TREND]
        if not then:
            return None
        rates.append(then[-1][1])
    newest, middle, oldest = (newer - older for newer, older in pairwise(rates))
    return newest, middle, oldest


def smoothly_faster(gains: tuple[float, float, float]) -> bool:
    """Each span gained more than the one before, the oldest at least 1/SMOOTH of the middle's:
    a rise that accelerates, as a sine's first half does. A step with noise before it rises from
    nothing in its oldest span."""
    newest, middle, oldest = gains
    return 0 < oldest <= middle <= newest and oldest * SMOOTH >= middle


def sustained(samples: Sequence[tuple[float, float]], now: float, requests: float) -> float:
    """The pace (requests per second, per second) of a rise over SPANS consecutive TREND-long
    spans that all rose; 0 unless all did. A step seen through a rate window rises over one
    window's length, so it lifts at most two consecutive spans: a rise over three is the demand's
    trend. Its pace is the slowest span's, or, while it accelerates smoothly, the gain the older
    two predict for the newest, when the newest confirms it."""
    gains = span_gains(samples, now, requests)
    if gains is None or min(gains) <= 0:
        return 0.0
    newest, middle, oldest = gains
    if smoothly_faster(gains):
        # The older spans predict the newest's gain, middle + (middle - oldest); the newest
        # confirms it (the lower of the two).
        return min(newest, 2 * middle - oldest) / TREND
    return min(gains) / TREND


NOISE_SIGMAS = 3.0  # how far beyond the rate's noise the oldest span's gain must be


def accelerating(samples: Sequence[tuple[float, float]], now: float, requests: float, over: float) -> float:
    """The rise over `over` seconds of a trend that accelerates smoothly, its acceleration kept:
    each span from now gains the newest span's gain plus the smaller of the last two increases
    once more (0 unless it accelerates). Only a rise whose oldest span gained more than
    NOISE_SIGMAS times the noise of the difference of two TREND-long rates (Poisson arrivals:
    sqrt(2 x rate / TREND)) counts: a slow drift under noise must not be extrapolated
    quadratically."""
    gains = span_gains(samples, now, requests)
    if gains is None or not smoothly_faster(gains):
        return 0.0
    newest, middle, oldest = gains
    if oldest < NOISE_SIGMAS * math.sqrt(2 * requests / TREND):
        return 0.0
    spans = over / TREND
    more = min(newest - middle, middle - oldest)
    return newest * spans + more * spans * spans / 2


def drained(
    backlog: float,
    arrivals: float,
    per_unit: float,
    ready: int,
    arriving: Sequence[tuple[float, int]],
    by: float,
) -> bool:
    """Whether `backlog` requests are all served within `by` seconds, with `arrivals` requests a
    second arriving, `ready` units serving `per_unit` each, and (seconds from now, units) more
    ready from each time in `arriving`."""
    left, at, count = backlog, 0.0, ready
    for then, more in [*sorted(a for a in arriving if a[0] < by), (by, 0)]:
        left += (arrivals - count * per_unit) * (then - at)
        if left <= 0:
            return True
        at, count = then, count + more
    return False


MOST = 2**30  # more units than any platform places: where no count drains the backlog


def planned_drain(
    backlog: float,
    arrivals: float,
    per_unit: float,
    ready: int,
    starting: Sequence[float],
    lead: float,
    horizon: float,
) -> int:
    """The fewest units to ask for now, beyond those ready and starting (`starting`: seconds until
    each is ready), that serve the backlog within `horizon` seconds of when a unit asked for now
    is ready (`lead`): what arrives beyond what the units serve until then is counted, and so is
    what the units already asked for serve once they are ready."""
    by = lead + horizon
    arriving = [(max(0.0, t), 1) for t in starting]

    def enough(extra: int) -> bool:
        return drained(backlog, arrivals, per_unit, ready, [*arriving, (lead, extra)], by)

    high = 1
    while high < MOST and not enough(high):
        high *= 2
    if high >= MOST:
        return MOST
    low = 0  # the fewest that drain it lies in (low, high], or is 0
    if enough(0):
        return 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def need(
    live: Sequence[UnitSignals],
    signals: Signals,
    capacity: float | None,
    utilization: float,
    horizon: float,
    starting: Sequence[float] = (),
    lead: float = 0.0,
    ahead: float = 0.0,
) -> Need | None:
    """None unless the arrival rate (tokens and requests) and a unit's capacity are all known.
    `starting`: seconds until each unit now starting is ready; `lead`: until a unit asked for now
    is; `ahead`: the rise of the arrival rate over a unit's startup (a unit asked for now serves
    that demand, and the backlog grows at it). Every unit serves at the planned utilization."""
    tokens, requests = signals.demand_tokens_per_second, signals.demand_requests_per_second
    if tokens is None or requests is None or capacity is None:
        return None
    if tokens <= 0 or requests <= 0 or capacity <= 0 or utilization <= 0 or horizon <= 0:
        return None
    steady = tokens * (requests + ahead) / requests / (capacity * utilization)
    per_unit = capacity * utilization * requests / tokens  # requests one unit completes per second
    ready = sum(1 for u in live if u.ready)
    backlog = backlog_requests(live, signals)
    if backlog <= 0:
        return Need(steady, backlog, 0.0, horizon)
    extra = planned_drain(backlog, requests + ahead, per_unit, ready, starting, lead, horizon)
    return Need(steady, backlog, max(0.0, ready + len(starting) + extra - steady), horizon)
