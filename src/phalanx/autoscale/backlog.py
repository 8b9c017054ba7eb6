"""What the demand needs, from the arrival rate and the learned capacity (Little's law in rates),
and how many more units drain a backlog within the policy's horizon.

A backlog (requests the router holds, requests waiting in engines) is work that arrived while the
units could not take it: it is done once, not every second. Read through the ratio rule it looks
like steady load (800 requests at 11 per unit asks for 72 units); here it asks for the units that
finish it within `backlog_horizon` seconds on top of what the steady demand needs, at the rate one
unit completes requests (its learned tokens per second over the tokens per request).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from phalanx.autoscale.recommend import number
from phalanx.autoscale.types import Signals, UnitSignals


@dataclass(frozen=True)
class Need:
    steady: float  # units the arrival rate needs at the planned utilization
    # Requests held at the router or waiting in engines, now and until starting units are ready.
    backlog: float
    drain: float  # units more that finish the backlog within the horizon
    horizon: float

    @property
    def units(self) -> int:
        return math.ceil(self.steady + self.drain - 1e-9)

    def text(self, unit: str) -> str:
        return (
            f"the demand needs {number(self.steady)} and the backlog of {number(self.backlog)} "
            f"requests {number(self.drain)} more to drain in {number(self.horizon)} s: {self.units}"
        )


def backlog_requests(live: Sequence[UnitSignals], signals: Signals) -> float:
    """Requests not being served: held at the router (admission queue included) or waiting in an
    engine. Unknown values count 0: the backlog only ever raises a cap, never lowers a count."""
    held = sum(u.queue or 0.0 for u in live if u.ready) + signals.admission_queue
    return held + sum(u.waiting or 0.0 for u in live if u.ready)


def still_starting(live: Sequence[UnitSignals], now: float, startup: float | None) -> float:
    """Seconds until the last unit now starting is ready, by the learned startup time (0 when
    none is starting or no startup was seen yet)."""
    ages = [now - u.pending_since for u in live if not u.ready and u.pending_since is not None]
    if startup is None or not ages:
        return 0.0
    return max(0.0, startup - min(ages))


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
    over the whole of `over` at its slowest span's pace. 0 when it falls or no rate that old is
    known (a falling demand is the windows' business)."""
    then = [s for s in samples if s[0] <= now - TREND]
    if not then:
        return 0.0
    time, rate = then[-1]
    gained = max(0.0, requests - rate)
    return max(min(gained, gained / (now - time) * over), sustained(samples, now, requests) * over)


def sustained(samples: Sequence[tuple[float, float]], now: float, requests: float) -> float:
    """The pace (requests per second, per second) of a rise over SPANS consecutive TREND-long
    spans that all rose; 0 unless all did. A step seen through a rate window rises over one
    window's length, so it lifts at most two consecutive spans: a rise over three is the demand's
    trend. Its pace is the slowest span's, or, while each span gains more than the one before
    (and the oldest not from nothing), the gain the older two predict for the newest, when the
    newest confirms it: the rise accelerates, as a sine's first half does."""
    rates = [requests]
    for k in range(1, SPANS + 1):
        then = [s for s in samples if s[0] <= now - k * TREND]
        if not then:
            return 0.0
        rates.append(then[-1][1])
    gains = [newer - older for newer, older in pairwise(rates)]  # newest first
    if min(gains) <= 0:
        return 0.0
    newest, middle, oldest = gains
    if oldest <= middle <= newest and oldest * SMOOTH >= middle:
        # Accelerating: the older spans predict the newest's gain, middle + (middle - oldest); the
        # newest confirms it (the lower of the two). A step with noise before it rises from
        # nothing (oldest far below middle) and keeps the slowest pace.
        return min(newest, 2 * middle - oldest) / TREND
    return min(gains) / TREND


def need(
    live: Sequence[UnitSignals],
    signals: Signals,
    capacity: float | None,
    utilization: float,
    horizon: float,
    remaining: float = 0.0,
    ahead: float = 0.0,
) -> Need | None:
    """None unless the arrival rate (tokens and requests) and a unit's capacity are all known.
    While units start (`remaining` seconds more), the backlog grows by what arrives beyond the
    ready units' capacity: that growth is counted now, so one step asks for it. `ahead` is the
    rise of the arrival rate over a unit's startup: a unit asked for now serves that demand."""
    tokens, requests = signals.demand_tokens_per_second, signals.demand_requests_per_second
    if tokens is None or requests is None or capacity is None:
        return None
    if tokens <= 0 or requests <= 0 or capacity <= 0 or utilization <= 0 or horizon <= 0:
        return None
    steady = tokens * (requests + ahead) / requests / (capacity * utilization)
    per_unit = capacity * requests / tokens  # requests one unit completes per second
    ready = sum(1 for u in live if u.ready)
    growth = max(0.0, requests - ready * per_unit) * remaining
    backlog = backlog_requests(live, signals) + growth
    return Need(steady, backlog, backlog / (per_unit * horizon), horizon)
