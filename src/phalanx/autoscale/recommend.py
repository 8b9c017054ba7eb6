"""What each signal alone asks for: one figure per metric target, with the sentence that explains it.

Load signals (and KV usage) follow the ratio rule, ceil(sum over units / target): the result is an
absolute count, so units still starting are already part of it and a scale-up is never stacked on
one that is on its way. A unit that is not ready, or a ready unit whose value is unknown, counts as
0 toward scale-up and as exactly at target toward scale-down: missing data never scales down.
The p95 signals are guards: above the objective they ask for one more than the ready units, under
it they ask for nothing (0), so they can raise the count and never lower it. The router's queue is
read the same way below its target: a short queue says the units keep up, not how many fewer would
(a queue of 0 does not mean 0 units), so only the load signals and the capacity floor scale down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from phalanx.autoscale.types import MetricTarget, SignalName, Signals, UnitSignals

GUARDS: frozenset[SignalName] = frozenset({"ttft_p95", "itl_p95"})
BOUND = 1e9  # a ratio past any real count (a tiny learned capacity, a huge queue) stays an integer


@dataclass(frozen=True)
class Figure:
    """What one source (a signal, "capacity" or "admission-queue") asks for, and why in words."""

    source: str
    replicas: int
    text: str
    # A figure that can only raise the count (a guard, a queue within its target): it says nothing
    # about how many fewer units would do.
    raise_only: bool = False


def plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def number(value: float) -> str:
    """A figure as a person would write it: 38, 0.85, 1300."""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def ratio_rule(raw_up: float, raw_down: float, current: int, tolerance: float) -> tuple[int, bool]:
    """The count a ratio asks for, and whether it was held by the tolerance band. `raw_up` reads
    unknown values as 0 (the most a scale-up can claim), `raw_down` reads them at target (the
    least a scale-down can claim); between the two the count stays."""
    raw_up, raw_down = min(raw_up, BOUND), min(raw_down, BOUND)
    if current == 0:
        return math.ceil(raw_up), False
    up, down = math.ceil(raw_up), math.ceil(raw_down)
    raw = raw_up if up > current else raw_down if down < current else None
    if raw is None:
        return current, False
    if abs(raw / current - 1.0) <= tolerance + 1e-9:  # the band's edges are inside it, despite floats
        return current, True
    return (up if up > current else down), False


def load_figure(
    metric: MetricTarget, live: Sequence[UnitSignals], signals: Signals, tolerance: float, unit: str
) -> Figure:
    known = [value for u in live if u.ready and (value := getattr(u, metric.signal)) is not None]
    missing = len(live) - len(known)
    total = sum(known) + (signals.admission_queue if metric.signal == "queue" else 0)
    raw_up = total / metric.target
    replicas, held = ratio_rule(raw_up, raw_up + missing, len(live), tolerance)
    if metric.signal == "kv_usage":
        mean = total / len(known) if known else 0.0
        seen = f"kv_usage {number(mean)} on average over {plural(len(known), 'ready ' + unit)}"
    else:
        seen = f"{metric.signal} {number(total)} over {plural(len(live), unit)}"
        if metric.signal == "queue" and signals.admission_queue:
            seen += f" (admission queue {signals.admission_queue} included)"
    text = f"{seen} at target {number(metric.target)} per {unit}"
    if metric.signal == "queue" and live and replicas <= len(live):
        # A queue within its target says the units keep up, not how many fewer would; while
        # requests are held, none of the units is spare.
        if total > 0:
            return Figure("queue", len(live), f"{text} keeps {len(live)} while requests wait", True)
        return Figure("queue", 0, f"{text} asks for no more {unit}s", True)
    if missing:
        text += f", {plural(missing, unit)} not reporting counted at target for scale-down"
    verdict = f"is within the {tolerance:.0%} tolerance: {replicas}" if held else f"asks for {replicas}"
    return Figure(metric.signal, replicas, f"{text} {verdict}")


def guard_figure(metric: MetricTarget, live: Sequence[UnitSignals], unit: str) -> Figure | None:
    """The mean of the ready units' p95 against the objective; None when no unit reports it."""
    known = [value for u in live if u.ready and (value := getattr(u, metric.signal)) is not None]
    if not known:
        return None
    mean = sum(known) / len(known)
    seen = f"{metric.signal} {number(mean)} s"
    if mean <= metric.target:
        return Figure(metric.signal, 0, f"{seen} is within the objective {number(metric.target)} s", True)
    ready = sum(u.ready for u in live)
    return Figure(
        metric.signal,
        ready + 1,
        f"{seen} is over the objective {number(metric.target)} s: one more than the "
        f"{plural(ready, 'ready ' + unit)} asks for {ready + 1}",
        True,
    )


def recommend(
    metrics: Sequence[MetricTarget],
    live: Sequence[UnitSignals],
    signals: Signals,
    tolerance: float,
    unit: str,
) -> list[Figure]:
    """One figure per metric target that has something to say (a guard with no data has not)."""
    figures: list[Figure] = []
    for metric in metrics:
        figure = (
            guard_figure(metric, live, unit)
            if metric.signal in GUARDS
            else load_figure(metric, live, signals, tolerance, unit)
        )
        if figure is not None:
            figures.append(figure)
    return figures
