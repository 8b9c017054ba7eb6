"""Small builders for the autoscaler core's tests: units, policies and a pass-by-pass runner."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import (
    Decision,
    DecisionRecord,
    History,
    MetricTarget,
    PanicRule,
    Policy,
    Recommendation,
    Signals,
    StepLimit,
    UnitSignals,
)

CALM = PanicRule(threshold_percent=1000.0, hold=0.0)  # panic never enters: tests of stable mode
FREE = StepLimit(instances=1000, period=0.0)  # no step limit, no window


def units(count: int, start: int = 0, **values: Any) -> tuple[UnitSignals, ...]:
    """`count` ready units named g<start>.., each with the same per-unit values."""
    return tuple(UnitSignals(f"g{i}", True, **values) for i in range(start, start + count))


def pending(count: int, since: float, start: int = 100) -> tuple[UnitSignals, ...]:
    return tuple(UnitSignals(f"g{i}", False, pending_since=since) for i in range(start, start + count))


def policy(*metrics: MetricTarget, **fields: Any) -> Policy:
    """A policy on inflight (target 5) by default, 0..20 units, free to move unless told otherwise."""
    settings: dict[str, Any] = {
        "min_replicas": 0,
        "max_replicas": 20,
        "metrics": metrics or (MetricTarget("inflight", 5.0),),
        "scale_up": FREE,
        "scale_down": FREE,
        "panic": CALM,
    }
    settings.update(fields)
    return Policy(**settings)


def run(
    chosen: Policy, passes: Iterable[tuple[float, Signals]], history: History | None = None
) -> list[Decision]:
    """Decide pass after pass, carrying the history as the shell would."""
    decisions: list[Decision] = []
    kept = history or History()
    for now, signals in passes:
        decision = autoscale(chosen, signals, now, kept)
        decisions.append(decision)
        kept = decision.history
    return decisions


def round_trip(history: History) -> History:
    """The history as a restarted controller rebuilds it: written to status as JSON, read back."""
    data = json.loads(json.dumps(dataclasses.asdict(history)))
    return History(
        recommendations=tuple(Recommendation(**r) for r in data.pop("recommendations")),
        records=tuple(DecisionRecord(**r) for r in data.pop("records")),
        starting=tuple((name, since) for name, since in data.pop("starting")),
        demand=tuple((time, rate) for time, rate in data.pop("demand")),
        **data,
    )


def every(
    period: float, count: int, signals: Signals | Sequence[Signals], start: float = 0.0
) -> list[tuple[float, Signals]]:
    """`count` passes `period` apart, with the same signals or one signals per pass."""
    chosen = [signals] * count if isinstance(signals, Signals) else list(signals)
    return [(start + i * period, s) for i, s in enumerate(chosen)]
