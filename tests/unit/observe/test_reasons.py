"""The reason kind of autoscaling decisions, on reasons the real autoscaler core writes."""

from __future__ import annotations

import pytest

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import History, Signals, StepLimit
from phalanx.observe.reasons import REASON_KINDS, reason_kind
from tests.unit.autoscale.core_builders import policy, units


def decided(signals: Signals, **fields: object) -> str:
    return autoscale(policy(**fields), signals, 0.0, History()).reason


def test_a_plain_signal_scale_up() -> None:
    assert reason_kind(decided(Signals(units=units(2, inflight=10.0)))) == "signal"


def test_the_step_limit_wins_over_the_signal_that_asked() -> None:
    limited = decided(
        Signals(units=units(4, inflight=9.5)), scale_up=StepLimit(instances=2, percent=0.0, period=15.0)
    )
    assert "scale-up limit" in limited
    assert reason_kind(limited) == "rate-limit"


def test_the_maximum() -> None:
    capped = decided(Signals(units=units(2, inflight=50.0)), max_replicas=3)
    assert reason_kind(capped) == "bounds"


def test_the_first_group_started_at_once() -> None:
    assert reason_kind(decided(Signals(units=(), admission_queue=3))) == "from-zero"


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("demand 900 tokens/s at the learned 300 tokens/s per group asks for 3.", "capacity"),
        ("ttft_p95 3 s is over the objective 2 s: one more than the 2 ready groups asks for 3.", "latency"),
        (
            "x; kept at 4: the arrival rate is rising (+2 requests/s within 30 s), no scale-down.",
            "rising-demand",
        ),
        ("x; kept at 1: the load has not been 0 for the whole 300 s scale-down window.", "idle-window"),
        ("x; lowered to 2: 1 pending past the timeout (g3) and no room to place more.", "placement"),
        (
            "x; held at 3 by the scale-down window (highest recommendation in the last 300 s: 3).",
            "stabilization",
        ),
        ("x; kept at 4: no scale-down in panic mode.", "panic"),
        ("x; decode raised to 4 to keep prefill:decode within 0.5-1.", "ratio"),
        ("ModelServing m is already scaled by AutoscalingPolicy a (the older policy); ...", "conflict"),
        ("no signal has data, keeping 2 groups.", "no-signal"),
        (
            "inflight 0 over 1 group at target 5 per group (admission queue 2 included) keeps 1 "
            "while requests wait.",
            "queue",
        ),
        ("something the patterns do not know", "other"),
        ("", "other"),
    ],
)
def test_kinds_from_the_autoscalers_words(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
    assert kind in REASON_KINDS
