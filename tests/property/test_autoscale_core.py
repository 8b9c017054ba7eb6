"""Random policies and signal traces against the autoscaler core's promises: bounds, no scale-down
in panic or on missing data, a start from zero, bounded history, restart safety, step limits."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import (
    Decision,
    History,
    MetricTarget,
    PanicRule,
    Policy,
    SignalName,
    Signals,
    StepLimit,
    UnitSignals,
)
from tests.unit.autoscale.core_builders import CALM, round_trip, run

SIGNALS: list[SignalName] = [
    "queue",
    "inflight",
    "waiting",
    "running",
    "kv_usage",
    "ttft_p95",
    "itl_p95",
    "prefill_queued_tokens",
]
RELAXED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

maybe = st.one_of(st.none(), st.floats(0, 60, allow_nan=False))
limits = st.builds(
    StepLimit,
    instances=st.integers(0, 5),
    percent=st.sampled_from([0.0, 10.0, 50.0, 100.0, 300.0]),
    period=st.sampled_from([0.0, 15.0, 30.0, 60.0]),
    select=st.sampled_from(["Or", "And"]),
    stabilization_window=st.sampled_from([0.0, 15.0, 60.0, 300.0]),
)
panics = st.builds(
    PanicRule,
    percent=st.sampled_from([0.0, 100.0, 1000.0]),
    period=st.sampled_from([15.0, 60.0]),
    threshold_percent=st.sampled_from([110.0, 200.0, 1000.0]),
    hold=st.sampled_from([0.0, 30.0, 60.0]),
)


@st.composite
def policies(draw: st.DrawFn, **fixed: Any) -> Policy:
    low = draw(st.integers(0, 4))
    chosen = draw(st.lists(st.sampled_from(SIGNALS), min_size=1, max_size=4, unique=True))
    fields: dict[str, Any] = {
        "min_replicas": low,
        "max_replicas": draw(st.integers(low, low + 16)),
        "metrics": tuple(MetricTarget(s, draw(st.sampled_from([0.5, 1.0, 5.0, 1000.0]))) for s in chosen),
        "tolerance": draw(st.sampled_from([0.0, 0.1, 0.3])),
        "scale_up": draw(limits),
        "scale_down": draw(limits),
        "panic": draw(panics),
        "pending_timeout": draw(st.sampled_from([30.0, 300.0])),
        "capacity_floor": draw(st.booleans()),
        "history_limit": draw(st.integers(1, 8)),
    }
    fields.update(fixed)
    return Policy(**fields)


@st.composite
def unit_signals(draw: st.DrawFn, index: int, now: float) -> UnitSignals:
    ready = draw(st.booleans())
    return UnitSignals(
        f"g{index}",
        ready,
        draining=draw(st.sampled_from([False, False, False, True])),
        pending_since=None
        if ready
        else draw(st.one_of(st.none(), st.floats(now - 900, now, allow_nan=False))),
        **{name: draw(maybe) for name in SIGNALS},
        tokens_per_second=draw(st.one_of(st.none(), st.floats(0, 5000, allow_nan=False))),
    )


@st.composite
def signal_sets(draw: st.DrawFn, now: float) -> Signals:
    count = draw(st.integers(0, 10))
    return Signals(
        units=tuple(draw(unit_signals(i, now)) for i in range(count)),
        admission_queue=draw(st.sampled_from([0, 0, 1, 7, 60])),
        demand_tokens_per_second=draw(st.one_of(st.none(), st.floats(0, 20000, allow_nan=False))),
        placeable=draw(st.one_of(st.none(), st.integers(0, 6))),
    )


@st.composite
def traces(draw: st.DrawFn) -> list[tuple[float, Signals]]:
    now, passes = 1000.0, []
    for _ in range(draw(st.integers(1, 12))):
        now += draw(st.sampled_from([5.0, 15.0, 15.0, 40.0, 400.0]))
        passes.append((now, draw(signal_sets(now))))
    return passes


def within(decision: Decision, chosen: Policy) -> bool:
    return chosen.min_replicas <= decision.desired <= chosen.max_replicas


@RELAXED
@given(policies(), traces())
def test_the_count_stays_within_min_and_max_and_the_history_stays_bounded(
    chosen: Policy, trace: list[tuple[float, Signals]]
) -> None:
    longest = max(chosen.scale_up.stabilization_window, chosen.scale_down.stabilization_window)
    for (now, _), decision in zip(trace, run(chosen, trace), strict=True):
        assert within(decision, chosen)
        assert decision.reason.endswith(".") and "\n" not in decision.reason
        assert len(decision.history.records) <= chosen.history_limit
        assert all(r.time >= now - longest for r in decision.history.recommendations[1:])
        if decision.mode == "Panic":  # nothing scales down, save units stuck Pending (one event each)
            stuck = sum(e.reason == "ScaleUpBlocked" for e in decision.events)
            assert decision.desired >= min(decision.current - stuck, chosen.max_replicas)


@RELAXED
@given(policies(), traces(), st.data())
def test_a_restart_from_the_persisted_history_decides_the_same(
    chosen: Policy, trace: list[tuple[float, Signals]], data: st.DataObject
) -> None:
    straight = run(chosen, trace)
    cut = data.draw(st.integers(0, len(trace) - 1))
    history = round_trip(straight[cut - 1].history) if cut else History()
    assert run(chosen, trace[cut:], history) == straight[cut:]


@RELAXED
@given(policies(), traces(), st.integers(1, 60))
def test_requests_waiting_at_zero_units_start_one_in_the_same_pass(
    chosen: Policy, trace: list[tuple[float, Signals]], waiting: int
) -> None:
    now, last = trace[-1]
    history = run(chosen, trace[:-1])[-1].history if len(trace) > 1 else History()
    drained = tuple(dataclasses.replace(u, draining=True) for u in last.units)
    at_zero = dataclasses.replace(last, units=drained, admission_queue=waiting)
    decision = autoscale(chosen, at_zero, now, history)
    if chosen.max_replicas >= 1 and (last.placeable is None or last.placeable >= 1):
        assert decision.desired >= 1


@RELAXED
@given(policies(), traces())
def test_missing_data_never_scales_down(chosen: Policy, trace: list[tuple[float, Signals]]) -> None:
    now, last = trace[-1]
    history = run(chosen, trace[:-1])[-1].history if len(trace) > 1 else History()
    blind = tuple(UnitSignals(u.name, True) for u in last.units if not u.draining)
    decision = autoscale(chosen, Signals(units=blind), now, history)
    assert decision.desired == min(max(len(blind), chosen.min_replicas), chosen.max_replicas)


@RELAXED
@given(policies(panic=CALM), signal_sets(1000.0))
def test_more_load_never_asks_for_fewer_units(chosen: Policy, signals: Signals) -> None:
    def scaled(factor: float) -> Signals:
        loaded = tuple(
            dataclasses.replace(u, queue=None if u.queue is None else u.queue * factor) for u in signals.units
        )
        return dataclasses.replace(signals, units=loaded)

    queue_policy = dataclasses.replace(chosen, metrics=(MetricTarget("queue", 5.0), *chosen.metrics))
    light = autoscale(queue_policy, scaled(1.0), 1000.0, History())
    heavy = autoscale(queue_policy, scaled(3.0), 1000.0, History())
    assert heavy.desired >= light.desired


@RELAXED
@given(
    st.integers(1, 3), st.sampled_from([15.0, 30.0]), st.lists(st.integers(0, 400), min_size=2, max_size=10)
)
def test_a_stable_scale_up_never_moves_more_than_the_step_limit_per_period(
    step: int, period: float, totals: list[int]
) -> None:
    chosen = Policy(
        min_replicas=1,
        max_replicas=50,
        metrics=(MetricTarget("queue", 5.0),),
        scale_up=StepLimit(instances=step, percent=0.0, period=period),
        panic=CALM,
    )
    count, history = 1, History()
    for i, total in enumerate(totals):
        signals = Signals(units=tuple(UnitSignals(f"g{k}", True, queue=total / count) for k in range(count)))
        decision = autoscale(chosen, signals, i * (period + 1), history)
        assert decision.desired <= count + step
        count, history = decision.desired, decision.history
