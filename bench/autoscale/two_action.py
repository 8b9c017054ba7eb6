"""The two-action bound: the cheapest schedule with at most two changes of the count per cycle
that still meets each minute's oracle count, started Pending + Tc ahead as `oracle-Tc` starts
its units.

A schedule holds one level per run of minutes; the changes between runs are its actions. For
every choice of the minutes where the count changes (at most `changes` of them, anywhere), the
cheapest levels are the most each run's minutes need (any higher only costs more), so trying
every choice of change minutes is an exact search. Each schedule is priced as `oracle-Tc`'s
`Ahead` would ask for it, pass by pass (a unit is held from when it is asked for, Tc before the
minute that needs it); the cheapest few are then replayed on the real platform and the cheapest
replay is the bound (the replay adds the drained units' tails, which the price leaves out).
The cheapest price alone, in GPU-hours, is a floor under every such schedule's replayed cost
that rests on no choice of which to replay.

A scaler that holds at least the oracle's count every minute with at most that many changes
pays at least this much; if it is over 1.15x oracle-Tc, "at most two actions per cycle" and
"at most 1.15x oracle-Tc" cannot both hold for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise

from oracle import Ahead

from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.metrics import gpu_hours
from phalanx.autoscale.replay.replayer import Replayer, RunResult
from phalanx.autoscale.replay.trace import Trace
from phalanx.autoscale.types import Signals

REPLAYED = 5  # the cheapest schedules by price that are replayed


def schedules(units: Sequence[int], changes: int) -> Iterator[tuple[int, ...]]:
    """Every schedule with at most `changes` changes whose every minute holds at least `units`
    of that minute, each at its cheapest levels (the same schedule may come more than once)."""
    n = len(units)
    for k in range(min(changes, max(n - 1, 0)) + 1):
        for cuts in combinations(range(1, n), k):
            levels: list[int] = []
            for first, last in pairwise((0, *cuts, n)):
                levels += [max(units[first:last])] * (last - first)
            yield tuple(levels)


def windows(
    minutes: int, lead: float, duration: float, step: float, period: float
) -> Counter[tuple[int, int]]:
    """How many passes of `Ahead` look at each span of minutes (first, last) over the trace."""
    spans: Counter[tuple[int, int]] = Counter()
    passes = round(duration / period)
    for i in range(passes):
        now = i * period
        first = min(int(now // step), minutes - 1)
        last = min(int((now + lead) // step), minutes - 1)
        spans[(first, last)] += 1
    return spans


def price(levels: Sequence[int], spans: Counter[tuple[int, int]], period: float) -> float:
    """Unit-seconds `Ahead` holds for `levels` (starting units included, drains left out)."""
    return period * sum(count * max(levels[first : last + 1]) for (first, last), count in spans.items())


def changes_of(levels: Sequence[int]) -> int:
    return sum(1 for a, b in pairwise(levels) if a != b)


@dataclass(frozen=True)
class Bound:
    levels: tuple[int, ...]  # the count per minute the units are ready for
    result: RunResult
    priced_gpu_hours: float  # the cheapest price of any schedule (drains left out)


def replay_ahead(
    trace: Trace, capacity: CapacityModel, levels: tuple[int, ...], step: float = 60.0
) -> RunResult:
    """`levels` asked for Pending + Tc ahead of their minutes, as `oracle.planned` asks."""
    scaler = Ahead(levels, capacity.startup, step)
    replayer = Replayer(trace, capacity, scaler, initial_units=scaler.decide(Signals(units=()), 0.0))
    replayer.advance(trace.duration)
    replayer.advance(trace.duration + 900.0, stop_when_done=True)
    return replayer.result()


def cheapest(
    trace: Trace, capacity: CapacityModel, units: Sequence[int], changes: int, *, step: float = 60.0
) -> Bound:
    """The two-action bound (see the module) for at most `changes` changes over the trace."""
    period = Ahead((), 0.0).period
    spans = windows(len(units), capacity.startup, trace.duration, step, period)
    priced = {levels: price(levels, spans, period) for levels in schedules(units, changes)}
    best = sorted(priced, key=lambda levels: (priced[levels], levels))[:REPLAYED]
    runs = [(levels, replay_ahead(trace, capacity, levels, step)) for levels in best]
    levels, result = min(runs, key=lambda run: gpu_hours(run[1]))
    return Bound(levels, result, priced[best[0]] * capacity.gpus_per_unit / 3600)
