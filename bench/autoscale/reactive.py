"""The reactive bound: the most a scaler without foresight gets within the objective.

A scaler without foresight adds units once the load it sees needs more than it holds, and each
waits Pending + Tc. The bound does that as well as it can be done: once it has seen one period of
a minute it knows exactly what that minute's load needs (the instant oracle's count), and the
moment that is more than it holds it asks for every unit it may and never gives one back. More
units never make a request wait longer in the model, so no scaler that holds only what the load
it has seen needs does better within the objective; its GPU-hours are what that costs. A scaler
that holds units the load does not need yet (headroom, or a forecast) can do better.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.autoscale.types import Signals


@dataclass
class Reactive:
    """Every unit it may the moment the load it has seen needs more than it holds (see the module)."""

    units: tuple[int, ...]  # the instant oracle's count per step
    max_units: int  # maxReplicas, or what the platform can place where that is fewer
    step: float = 60.0
    period: float = 15.0

    def decide(self, signals: Signals, now: float) -> int:
        held = sum(1 for u in signals.units if not u.draining)
        if not self.units:
            return held
        # The minute of which a whole period has been seen.
        seen = min(int(max(0.0, now - self.period) // self.step), len(self.units) - 1)
        need = self.units[seen]
        return self.max_units if need > held else held
