"""What the next pass needs from this one: the counter and histogram series of a page and when it
was read. Plain JSON, so the shell can keep it in memory or in a status field."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PageSnapshot:
    time: float
    # Series key (name and sorted labels, see `prom.series_key`) -> value.
    series: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "series": dict(self.series)}

    @staticmethod
    def from_json(data: object) -> PageSnapshot | None:
        """The snapshot `to_json` wrote; None for anything else (a damaged or foreign value only
        costs one window, it is never read as zeros)."""
        if not isinstance(data, Mapping):
            return None
        time, series = _number(data.get("time")), data.get("series")
        if time is None or not isinstance(series, Mapping):
            return None
        values = {k: _number(v) for k, v in series.items()}
        if not all(isinstance(k, str) and v is not None for k, v in values.items()):
            return None
        return PageSnapshot(time, {k: v for k, v in values.items() if v is not None})


def growth(previous: PageSnapshot | None, current: PageSnapshot) -> dict[str, float] | None:
    """How much each series grew since `previous`; a series new since then grew from 0. None when
    there is no usable window: no previous page, time did not advance, or a series went down or
    vanished (the program restarted and its counters began again)."""
    if previous is None or current.time <= previous.time:
        return None
    if any(key not in current.series for key in previous.series):
        return None
    deltas = {key: value - previous.series.get(key, 0.0) for key, value in current.series.items()}
    return None if any(delta < 0 for delta in deltas.values()) else deltas


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
