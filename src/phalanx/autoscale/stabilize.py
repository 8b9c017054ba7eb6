"""From the recommendation to the next count: stabilisation windows, step limits and panic mode,
with Kthena's semantics.

- Scale-up uses the lowest recommendation of its window, scale-down the highest of its.
- A step limit counts from the count in force over the last `period` (the lowest of them for
  scale-up, the highest for scale-down, the current count included): up to base + instances or
  base + floor(base * percent / 100), the looser of the two with select "Or", the tighter with
  "And"; down to base - instances or base - floor(base * percent / 100) likewise.
- Ours: a scale-down removes at least SMALLEST_DOWN of the current count (one unit at least):
  a smaller fall of the window's recommendation waits until it is that large; and it waits
  while the window's highest falls by another such step within SETTLE seconds.
- Ours: within FOLLOW_UP seconds of a scale-up another waits unless it adds at least
  FOLLOW_UP_LEAST of the current count (one unit at least).
- In panic the stable limits and windows do not apply: growth is capped at base + floor(base *
  percent / 100) from the lowest count of the panic period, and nothing scales down.

The counts in force come from the decision records alone (each holds the count before and after
a change), so a restarted controller that rebuilt its history from status decides the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from phalanx.autoscale.recommend import plural
from phalanx.autoscale.types import DecisionRecord, PanicRule, Recommendation, StepLimit

# As a rise's peak leaves the scale-down window, its highest recommendation falls a unit at a
# time, and each unit would be an action of its own (the benchmark's sine: 9.5 changes of the
# count per cycle, 7.0 with a fifth; Azure's one scale-down of 4 to 3 still passes).
SMALLEST_DOWN = 0.2
# A scale-down waits while the window's highest recommendation falls by a whole smallest step
# more within this long: one action instead of two (the benchmark's sine: 6.0 changes per cycle
# for 7.5, 75.5% within the objective for 73.5%, at 1.82x oracle-Tc for 1.76x; 30 s changed
# nothing, 120 s cost the bursts 0.32x).
SETTLE = 60.0
# The pass after a scale-up sees the same rise a period on and asks for a unit or two more, each
# an action of its own (the benchmark's sine: 7.5 changes of the count per cycle). Within
# FOLLOW_UP seconds of a scale-up another waits unless it adds FOLLOW_UP_LEAST of the count; a
# large ask (a drain plan's) still goes at once. The sine: 5.5 changes per cycle, 80.7% within
# the objective at 1.63x oracle-Tc for 81.1% at 1.73x; the step, steady load, Azure and the
# bursts unchanged; with no exception for a large ask the bursts lose 4 points.
FOLLOW_UP = 30.0
FOLLOW_UP_LEAST = 0.3


def smallest_down(current: int) -> int:
    """The fewest units a scale-down from `current` removes."""
    return max(1, math.ceil(current * SMALLEST_DOWN - 1e-9))


def smallest_follow_up(current: int) -> int:
    """The fewest units a scale-up within FOLLOW_UP seconds of the last one adds."""
    return max(1, math.ceil(current * FOLLOW_UP_LEAST - 1e-9))


def follow_up(step: Step, current: int, now: float, last_scale_up: float | None, unit: str) -> Step:
    """`step`, or the current count where it is a small scale-up right after another."""
    if step.desired <= current or last_scale_up is None or now - last_scale_up >= FOLLOW_UP:
        return step
    least = smallest_follow_up(current)
    if step.desired - current >= least:
        return step
    more = plural(step.desired - current, unit)
    clause = (
        f"kept at {current}: {seconds(now - last_scale_up)} after a scale-up, {more} more is under {least}"
        f" ({FOLLOW_UP_LEAST:.0%} of {current}), the least a scale-up within {seconds(FOLLOW_UP)}"
        " of the last adds"
    )
    return Step(current, (*step.clauses, clause))


@dataclass(frozen=True)
class Step:
    """The count after this stage, and what the stage did, in words (none when it changed nothing)."""

    desired: int
    clauses: tuple[str, ...] = ()


def seconds(value: float) -> str:
    return f"{value:g} s"


def window_values(recommendations: Sequence[Recommendation], now: float, window: float) -> list[int]:
    """Recommendations made within the last `window` seconds (this pass's always is)."""
    return [r.replicas for r in recommendations if r.time >= now - window]


def settled(recommendations: Sequence[Recommendation], now: float, window: float, desired: int) -> int:
    """The highest recommendation the window will still hold SETTLE seconds from now, if no
    higher one comes; `desired` where the window is no longer than that."""
    if window <= SETTLE:
        return desired
    return max(window_values(recommendations, now, window - SETTLE), default=desired)


def counts_in_force(records: Sequence[DecisionRecord], current: int, now: float, period: float) -> list[int]:
    """Every count that was in force at some moment of the last `period`, its start included."""
    counts = [current]
    for record in records:
        if record.time >= now - period:
            counts += [record.previous, record.desired]
    return counts


def up_limit(base: int, limit: StepLimit) -> int:
    absolute = base + limit.instances
    relative = base + math.floor(base * limit.percent / 100)
    return max(absolute, relative) if limit.select == "Or" else min(absolute, relative)


def down_floor(base: int, limit: StepLimit) -> int:
    absolute = base - limit.instances
    relative = base - math.floor(base * limit.percent / 100)
    return min(absolute, relative) if limit.select == "Or" else max(absolute, relative)


def describe(limit: StepLimit, moved: int, direction: str, unit: str) -> str:
    which = "looser" if limit.select == "Or" else "tighter"
    return (
        f"the {direction} limit of {plural(moved, unit)} per {seconds(limit.period)} "
        f"({limit.instances} or {limit.percent:g}%, the {which})"
    )


def stable_step(
    recommended: int,
    current: int,
    now: float,
    recommendations: Sequence[Recommendation],
    records: Sequence[DecisionRecord],
    limit: StepLimit,
    unit: str,
) -> Step:
    """Scale-up when the recommendation is above the current count, scale-down when below."""
    up = recommended > current
    direction, extreme, which = ("scale-up", min, "lowest") if up else ("scale-down", max, "highest")
    inner = extreme(window_values(recommendations, now, limit.stabilization_window))
    desired = max(min(recommended, inner), current) if up else min(max(recommended, inner), current)
    clauses: list[str] = []
    if desired != recommended:
        clauses.append(
            f"held at {desired} by the {direction} window ({which} recommendation in the last "
            f"{seconds(limit.stabilization_window)}: {inner})"
        )
    least = smallest_down(current)
    soon = settled(recommendations, now, limit.stabilization_window, desired)
    if not up and desired < current and soon <= desired - smallest_down(desired):
        clauses.append(
            f"kept at {current}: the window's highest recommendation falls to {soon} within "
            f"{seconds(SETTLE)}, one scale-down then instead of two"
        )
        return Step(current, tuple(clauses))
    if not up and current - least < desired < current:
        clauses.append(
            f"kept at {current}: a scale-down of {current - desired} is under the smallest, "
            f"{least} ({SMALLEST_DOWN:.0%} of {current})"
        )
        return Step(current, tuple(clauses))
    if limit.period > 0:
        base = extreme(counts_in_force(records, current, now, limit.period))
        bound = max(up_limit(base, limit), current) if up else min(down_floor(base, limit), current)
        if (desired > bound) if up else (desired < bound):
            desired = bound
            verb = "capped" if up else "held"
            clauses.append(f"{verb} at {bound} by {describe(limit, abs(bound - base), direction, unit)}")
    return Step(desired, tuple(clauses))


def panic_step(
    recommended: int, current: int, now: float, records: Sequence[DecisionRecord], rule: PanicRule, unit: str
) -> Step:
    clauses: list[str] = []
    desired = recommended
    base = min(counts_in_force(records, current, now, rule.period))
    if base > 0:
        ceiling = base + math.floor(base * rule.percent / 100)
        if desired > ceiling:
            desired = ceiling
            clauses.append(
                f"capped at {ceiling} by the panic limit of {rule.percent:g}% per {seconds(rule.period)} "
                f"from {plural(base, unit)}"
            )
    if desired < current:
        desired = current
        clauses.append(f"kept at {current}: no scale-down in panic mode")
    return Step(desired, tuple(clauses))
