"""The capacity floor: tokens per second one unit sustains, learned while units run, and the count
the demand needs at that rate.

Only a saturated unit (requests waiting in its engine) shows its capacity: an unsaturated unit's
tokens per second is just the demand it was given; and only once it has stayed saturated for
SATURATED_FOR, since a unit that has just begun to queue was still idle for part of its rate
window. The estimate is a smoothed maximum: it rises at
once to the mean of this pass's saturated units when that is higher (a unit proved it can serve
that much) and falls by a tenth of the gap when it is lower, so one slow pass does not raise the
floor, while a lasting change of the request mix (longer prompts, fewer tokens per second) is
followed within a few minutes. A floor that is too low only weakens the floor; one that is too
high would keep idle units, so the estimate leans high.
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.autoscale.recommend import Figure, number, ratio_rule
from phalanx.autoscale.types import UnitSignals

FALL = 0.1  # share of the gap the estimate moves down per pass with lower saturated samples
# Seconds a unit must have had requests waiting at every pass before its rate teaches the
# capacity: a unit that just began to queue was idle for part of its rate window, so its first
# saturated rate is below what it sustains (on the benchmark's Azure slice, 2,366 tokens/s for a
# unit whose batch sustains about 3,900). 15 s was too short to clear the window; 60 s learned
# later on every rise (bench/autoscale/results.md).
SATURATED_FOR = 30.0


def is_saturated(unit: UnitSignals) -> bool:
    return (
        unit.ready
        and unit.waiting is not None
        and unit.waiting > 0
        and unit.tokens_per_second is not None
        and unit.tokens_per_second > 0
    )


def keep_saturated(
    previous: Sequence[tuple[str, float]], live: Sequence[UnitSignals], now: float
) -> tuple[tuple[str, float], ...]:
    """(name, since when) of the units saturated at this pass and at every pass since then."""
    since = dict(previous)
    return tuple((u.name, since.get(u.name, now)) for u in live if is_saturated(u))


def saturated_rate(
    live: Sequence[UnitSignals], saturated: Sequence[tuple[str, float]], now: float
) -> float | None:
    """Mean tokens per second of the ready units saturated at every pass of the last
    SATURATED_FOR seconds (`saturated`: `keep_saturated` of this pass); None when none was."""
    since = dict(saturated)
    rates = [
        u.tokens_per_second
        for u in live
        if is_saturated(u)
        and u.tokens_per_second is not None
        and since.get(u.name, now) <= now - SATURATED_FOR
    ]
    return sum(rates) / len(rates) if rates else None


def batch_rate(
    live: Sequence[UnitSignals], max_running: int | None, tokens_per_request: float
) -> float | None:
    """Tokens per second one unit serves with its batch full, by Little's law: `max_running`
    requests at once, each holding its place for the ready units' mean `request_seconds`. It needs
    no saturation: a unit that is never full still shows how long a request keeps its place.
    None when the batch size or no unit's request time is known."""
    held = [
        u.request_seconds for u in live if u.ready and u.request_seconds is not None and u.request_seconds > 0
    ]
    if max_running is None or max_running <= 0 or not held or tokens_per_request <= 0:
        return None
    return max_running * tokens_per_request / (sum(held) / len(held))


def learn_capacity(
    previous: float | None,
    live: Sequence[UnitSignals],
    saturated: Sequence[tuple[str, float]],
    now: float,
) -> float | None:
    sample = saturated_rate(live, saturated, now)
    if sample is None:
        return previous
    if previous is None or sample >= previous:
        return sample
    return previous + FALL * (sample - previous)


def capacity_figure(
    demand: float | None,
    capacity: float | None,
    current: int,
    tolerance: float,
    unit: str,
    utilization: float = 1.0,
    expected: float | None = None,
    which: str = "learned",
) -> Figure | None:
    """ceil(demand / (capacity per unit x utilization)), held inside the tolerance band like any
    ratio. No demand needs no unit, whatever the capacity (known or not). `expected`: the demand
    forecast for when a unit asked for now is ready, planned for when above today's; `which`: where the
    capacity comes from, in the reason (learned, the batch's estimate, the policy's prior)."""
    if demand is not None and demand <= 0:
        return Figure("capacity", 0, f"no demand (0 tokens/s) needs no {unit}")
    if demand is None or capacity is None or capacity <= 0:
        return None
    rising = expected is not None and expected > demand and number(expected) != number(demand)
    planned_demand = expected if expected is not None and rising else demand
    planned = capacity * utilization
    raw = planned_demand / planned
    replicas, held = ratio_rule(raw, raw, current, tolerance)
    verdict = f"is within the {tolerance:.0%} tolerance: {replicas}" if held else f"asks for {replicas}"
    at = f" at {utilization:.0%} of" if utilization != 1.0 else " at"
    seen = f"demand {number(demand)} tokens/s"
    if rising:
        seen += f", rising to {number(planned_demand)} by the time a new {unit} is ready,"
    return Figure(
        "capacity",
        replicas,
        f"{seen}{at} the {which} {number(capacity)} tokens/s per {unit} {verdict}",
    )
