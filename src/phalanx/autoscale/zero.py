"""Scale to and from zero.

From zero: requests waiting in the router's admission queue with no unit to serve them start
units in the same pass, max(1, the recommendation), with no window and no step limit, since
every second is a second those requests wait.

To zero: only when the policy allows it (min_replicas 0) and the recommendation was 0, so every
load signal and the admission queue were 0, for the whole scale-down window. "Whole" is proved by
a recommendation made at or before the window's start: a controller that just started has not
seen the window yet and keeps one unit.
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.autoscale.types import Recommendation


def idle_for(recommendations: Sequence[Recommendation], now: float, window: float) -> bool:
    """True when the recommendation in force over all of [now - window, now] was 0."""
    start = now - window
    before = [r for r in recommendations if r.time <= start]
    if not before:
        return False
    return before[-1].replicas == 0 and all(r.replicas == 0 for r in recommendations if r.time > start)
