"""How far a drain has got: the pure rule that decides when a draining group or role instance
may be deleted.

A drain waits for the routers to notice it (`drain_settle`), then for every entry pod to be known
idle, and never longer than its bound (the entry's termination grace period). Counts come from the
runtime's in-flight source; a count nobody knows holds the drain to the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from phalanx.controller.recovery import Settings


@dataclass(frozen=True)
class Drain:
    """Where a drain stands: `done` (delete now), else reconcile again at `wake_at`."""

    done: bool
    wake_at: float
    in_flight: int  # summed over the entry pods whose count is known
    unknown: int  # entry pods whose count nobody knows
    timeout: float

    @property
    def message(self) -> str:
        requests = "request" if self.in_flight == 1 else "requests"
        text = f"draining: {self.in_flight} {requests} in flight"
        if self.unknown:
            pods = "entry pod" if self.unknown == 1 else "entry pods"
            text += f", unknown at {self.unknown} {pods}: waiting up to the {self.timeout:g} s drain bound"
        return text


def drain_progress(
    counts: Sequence[int | None], since: float, now: float, timeout: float, settings: Settings
) -> Drain:
    """A drain started at `since` ends once routers had `drain_settle` to notice it and every
    entry pod is known to be idle, or when the bound `timeout` is reached. An unknown count
    (None) is never idle: it holds the drain to the bound."""
    known = [c for c in counts if c is not None]
    in_flight, unknown = sum(known), len(counts) - len(known)
    deadline = since + timeout
    settled = now >= since + settings.drain_settle
    done = now >= deadline or (settled and in_flight == 0 and not unknown)
    if done:
        wake_at = now
    elif not settled:
        wake_at = min(since + settings.drain_settle, deadline)
    else:
        wake_at = min(now + settings.drain_poll, deadline)
    return Drain(done, wake_at, in_flight, unknown, timeout)
