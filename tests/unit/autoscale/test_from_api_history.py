"""Every History field survives a restart: History -> the policy's status (as the API server
stores it) -> History is the identity, and a pass decides the same from the rebuilt history."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.api.autoscalingpolicy import STATUS_LIST_LIMIT, TargetScalingStatus
from phalanx.autoscale.core import autoscale
from phalanx.autoscale.from_api import history_from_status, status_from_decision
from phalanx.autoscale.types import (
    Decision,
    DecisionRecord,
    History,
    MetricTarget,
    Policy,
    Recommendation,
    Signals,
    UnitSignals,
)
from tests.unit.autoscale.core_builders import pending, policy, units

# A value other than the default for each History field. A field added to History without a
# sample here fails `test_every_history_field_has_a_sample`: persist it in the status (the
# model, from_api both ways, the CRD) and add its sample.
SAMPLES: dict[str, Any] = {
    "recommendations": (Recommendation(100.0, 2), Recommendation(115.25, 3)),
    "records": (
        DecisionRecord(time=100.0, previous=1, desired=2, mode="Stable", reason="inflight 9 over 4"),
        DecisionRecord(time=130.5, previous=2, desired=6, mode="Panic", reason="queue at 300%"),
    ),
    "panic_until": 190.5,
    "last_scale_up": 130.5,
    "last_scale_down": 40.0,
    "capacity_per_unit": 1234.5,
    "placement_limit": 3,
    "placement_retry_at": 601.0,
    "starting": (("demo-4", 120.0), ("demo-5", 121.125)),
    "startup": 87.5,
    "demand": ((60.0, 2.0), (75.0, 3.5), (90.0, 4.25)),
    "saturated": (("demo-1", 45.0), ("demo-2", 60.015625)),
    "backlog": (90.0, 126.0),
}
FIELDS = [f.name for f in dataclasses.fields(History)]


def restarted(history: History) -> History:
    """Written to status, through the wire (JSON the API server keeps), read back."""
    decision = Decision(desired=2, current=2, ready=2, mode="Stable", reason="", history=history)
    wire = status_from_decision(decision).to_dict()
    return history_from_status(TargetScalingStatus.model_validate(wire, strict=True))


def test_every_history_field_has_a_sample() -> None:
    assert sorted(SAMPLES) == sorted(FIELDS)
    defaults = History()
    for name in FIELDS:
        assert SAMPLES[name] != getattr(defaults, name), name


@pytest.mark.parametrize("name", FIELDS)
def test_each_history_field_survives_a_restart(name: str) -> None:
    history = History(**{name: SAMPLES[name]})
    assert restarted(history) == history


def test_a_full_history_survives_a_restart() -> None:
    history = History(**SAMPLES)
    assert restarted(history) == history


def test_a_list_longer_than_the_status_holds_keeps_its_newest_entries() -> None:
    many = tuple((float(i), 1.0) for i in range(STATUS_LIST_LIMIT + 5))
    assert restarted(History(demand=many)).demand == many[-STATUS_LIST_LIMIT:]


# Times on a 1/64 s grid: exact in binary and in the status's microseconds.
_times = st.integers(min_value=0, max_value=2_000_000_000 * 64).map(lambda n: n / 64)
_rates = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
_counts = st.integers(min_value=0, max_value=1_000_000)
_modes = st.sampled_from(["Stable", "Panic"])


@given(
    recommendations=st.lists(st.builds(Recommendation, _times, _counts), max_size=8).map(tuple),
    records=st.lists(
        st.builds(DecisionRecord, _times, _counts, _counts, _modes, st.text(max_size=20)), max_size=8
    ).map(tuple),
    panic_until=st.none() | _times,
    last_scale_up=st.none() | _times,
    last_scale_down=st.none() | _times,
    capacity_per_unit=st.none() | _rates,
    placement_limit=st.none() | _counts,
    placement_retry_at=st.none() | _times,
    starting=st.lists(st.tuples(st.text(min_size=1, max_size=12), _times), max_size=8).map(tuple),
    startup=st.none() | _rates,
    demand=st.lists(st.tuples(_times, _rates), max_size=8).map(tuple),
    saturated=st.lists(st.tuples(st.text(min_size=1, max_size=12), _times), max_size=8).map(tuple),
    backlog=st.none() | st.tuples(_times, _rates),
)
def test_any_history_survives_a_restart(**fields: Any) -> None:
    # A History field without a strategy here makes History(**fields) miss it: the test of samples
    # above names it.
    history = History(**fields)
    assert restarted(history) == history


# ---------------------------------------------------------------- the same decisions after a restart


INFLIGHT = MetricTarget("inflight", 5.0)


def _passes() -> list[tuple[float, Signals]]:
    """Demand rising while units start, one stuck Pending past the timeout, then placed: every
    History field is written and read on the way."""

    def signals(*group: UnitSignals, rate: float, placeable: int | None = None) -> Signals:
        return Signals(
            units=group,
            demand_tokens_per_second=rate * 1500.0,
            demand_requests_per_second=rate,
            placeable=placeable,
        )

    busy = units(2, inflight=20.0, waiting=4.0, tokens_per_second=2000.0)
    return [
        (0.0, signals(*busy, rate=3.0)),
        (15.0, signals(*busy, *pending(2, since=5.0), rate=2.5)),
        (30.0, signals(*busy, *pending(2, since=5.0), rate=3.0)),
        (75.0, signals(*busy, *units(1, start=100, inflight=10.0), *pending(1, 5.0, 101), rate=4.0)),
        (90.0, signals(*busy, *units(1, start=100, inflight=10.0), *pending(1, 5.0, 101), rate=4.0)),
        (120.0, signals(*busy, *units(1, start=100, inflight=10.0), rate=4.0)),
        (135.0, signals(*units(3, inflight=1.0, waiting=0.0, tokens_per_second=500.0), rate=1.0)),
        (400.0, signals(*units(3, inflight=1.0, waiting=0.0, tokens_per_second=500.0), rate=1.0)),
    ]


def _decide(chosen: Policy, rebuild: bool) -> list[Decision]:
    decisions: list[Decision] = []
    kept = History()
    for now, signals in _passes():
        decision = autoscale(chosen, signals, now, kept)
        decisions.append(decision)
        kept = restarted(decision.history) if rebuild else decision.history
    return decisions


def test_a_restart_before_every_pass_decides_as_the_history_in_memory() -> None:
    chosen = policy(INFLIGHT, min_replicas=1, pending_timeout=60.0)
    in_memory = _decide(chosen, rebuild=False)
    rebuilt = _decide(chosen, rebuild=True)
    assert rebuilt == in_memory
    # The scenario reaches every History field, so the equality above covers each of them.
    reached = {
        name
        for decision in in_memory
        for name in FIELDS
        if getattr(decision.history, name) != getattr(History(), name)
    }
    assert reached >= set(FIELDS) - {"panic_until"}
