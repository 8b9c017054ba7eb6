"""Units stuck Pending: lower the count to what the platform can place, say so, and try again later.

A unit not ready `pending_timeout` seconds after it was created is stuck. The count is then capped
at the units that were placed (current minus the stuck ones) plus what the platform says it can
still place. Where the platform knows (`Signals.placeable`, the local GPU inventory), the cap
follows it pass by pass, so scale-up resumes as soon as room appears. Where it does not (a
Kubernetes cluster), the cap is remembered in the history and scale-up is tried again once
`pending_timeout` has passed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from phalanx.autoscale.recommend import plural
from phalanx.autoscale.types import AutoscaleEvent, History, Signals, UnitSignals

# Whether these many more units of each role fit on the platform's free room together, after the
# units already waiting for room (the shells build it: the local GPU inventory, the nodes' free
# extended resources). `Signals.placeable` is one role's figure alone; roles scaled in one pass
# share the room through this.
Fits = Callable[[Mapping[str, int]], bool]


@dataclass(frozen=True)
class Placement:
    """The most units the platform can hold now (None: no limit known), why, and what to keep."""

    cap: int | None
    stuck: tuple[tuple[str, float], ...]  # (unit name, seconds it has waited)
    limit: int | None  # History.placement_limit for the next pass
    retry_at: float | None  # History.placement_retry_at for the next pass


def stuck_units(live: Sequence[UnitSignals], now: float, timeout: float) -> tuple[tuple[str, float], ...]:
    return tuple(
        (u.name, now - u.pending_since)
        for u in live
        if not u.ready and u.pending_since is not None and now - u.pending_since > timeout
    )


def placement(
    live: Sequence[UnitSignals], signals: Signals, now: float, history: History, timeout: float
) -> Placement:
    current = len(live)
    stuck = stuck_units(live, now, timeout)
    if signals.placeable is not None:
        return Placement(current - len(stuck) + signals.placeable, stuck, None, None)
    if stuck:
        return Placement(current - len(stuck), stuck, current - len(stuck), now + timeout)
    if (
        history.placement_limit is not None
        and history.placement_retry_at is not None
        and now < history.placement_retry_at
    ):
        # Units placed since then prove room for them: the ceiling never removes a placed unit.
        # Requests held with no unit at all always get their one unit tried (the start from zero).
        limit = max(history.placement_limit, current, 1 if signals.admission_queue > 0 and not current else 0)
        return Placement(limit, stuck, limit, history.placement_retry_at)
    return Placement(None, stuck, None, None)


def blocked_events(
    where: Placement, before: int, after: int, timeout: float, unit: str
) -> tuple[AutoscaleEvent, ...]:
    """One Warning per stuck unit, naming it and how long it waited."""
    if after < before:
        outcome = f"desired lowered from {before} to {after}, what the platform can place"
    else:
        outcome = f"the platform reports room again, desired stays {after}"
    return tuple(
        AutoscaleEvent(
            "Warning",
            "ScaleUpBlocked",
            f"{unit} {name} has been pending {waited:.0f} s (timeout {timeout:g} s); {outcome}",
        )
        for name, waited in where.stuck
    )


def blocked_clause(where: Placement, cap: int, unit: str) -> str:
    if where.stuck:
        names = ", ".join(name for name, _ in where.stuck)
        waiting = plural(len(where.stuck), unit)
        return f"lowered to {cap}: {waiting} pending past the timeout ({names}) and no room to place more"
    return f"capped at {cap}: what the platform can place"
