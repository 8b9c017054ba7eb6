"""The capacity floor learned from saturated units."""

from __future__ import annotations

import dataclasses

import pytest

from phalanx.autoscale.capacity import (
    SATURATED_FOR,
    batch_rate,
    capacity_figure,
    keep_saturated,
    learn_capacity,
    saturated_rate,
)
from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import History, Signals, UnitSignals
from tests.unit.autoscale.core_builders import policy, units


def test_only_saturated_ready_units_show_their_capacity() -> None:
    live = (
        UnitSignals("a", True, waiting=3.0, tokens_per_second=1200.0),
        UnitSignals("b", True, waiting=1.0, tokens_per_second=1400.0),
        UnitSignals("c", True, waiting=0.0, tokens_per_second=300.0),  # not saturated: just its demand
        UnitSignals("d", True, waiting=None, tokens_per_second=900.0),  # unknown: not known saturated
        UnitSignals("e", False, waiting=5.0, tokens_per_second=50.0),  # not ready
    )
    assert saturated_rate(live, long_saturated(live), NOW) == 1300.0


NOW = 1000.0


def long_saturated(live: tuple[UnitSignals, ...]) -> tuple[tuple[str, float], ...]:
    """Every unit saturated since a whole SATURATED_FOR ago."""
    return tuple((u.name, NOW - SATURATED_FOR) for u in live)


def test_no_saturated_unit_teaches_nothing() -> None:
    idle = units(3, waiting=0.0, tokens_per_second=500.0)
    assert saturated_rate(idle, long_saturated(idle), NOW) is None
    assert learn_capacity(800.0, idle, long_saturated(idle), NOW) == 800.0
    assert learn_capacity(None, (), (), NOW) is None


def test_a_unit_teaches_only_after_a_whole_saturated_span() -> None:
    live = (
        UnitSignals("a", True, waiting=2.0, tokens_per_second=2400.0),  # queued since 10 s ago
        UnitSignals("b", True, waiting=2.0, tokens_per_second=3900.0),  # queued since 30 s ago
    )
    saturated = (("a", NOW - 10.0), ("b", NOW - SATURATED_FOR))
    assert saturated_rate(live, saturated, NOW) == 3900.0
    assert saturated_rate(live[:1], saturated, NOW) is None
    assert learn_capacity(3000.0, live[:1], saturated, NOW) == 3000.0


def test_saturation_is_kept_from_its_first_pass_and_lost_at_once() -> None:
    previous = (("a", 900.0), ("b", 950.0), ("gone", 800.0))
    live = (
        UnitSignals("a", True, waiting=1.0, tokens_per_second=100.0),  # still: keeps its start
        UnitSignals("b", True, waiting=0.0, tokens_per_second=100.0),  # drained: forgotten
        UnitSignals("c", True, waiting=4.0, tokens_per_second=100.0),  # new: from now
        UnitSignals("d", False, waiting=4.0),  # not ready: not saturated
    )
    assert keep_saturated(previous, live, NOW) == (("a", 900.0), ("c", NOW))


def test_the_core_learns_from_the_third_pass_of_a_lasting_queue() -> None:
    history, learned = History(), []
    for k in range(4):
        signals = Signals(units=units(2, waiting=3.0, tokens_per_second=2000.0 + 100 * k))
        decision = autoscale(policy(), signals, NOW + 15.0 * k, history)
        history = decision.history
        learned.append(history.capacity_per_unit)
    assert learned == [None, None, 2200.0, 2300.0]
    assert history.saturated == (("g0", NOW), ("g1", NOW))


@pytest.mark.parametrize(
    ("previous", "sample", "learned"),
    [(None, 1000.0, 1000.0), (1000.0, 1500.0, 1500.0), (1000.0, 500.0, 950.0), (1000.0, 1000.0, 1000.0)],
)
def test_the_estimate_rises_at_once_and_falls_by_a_tenth_of_the_gap(
    previous: float | None, sample: float, learned: float
) -> None:
    live = units(2, waiting=1.0, tokens_per_second=sample)
    assert learn_capacity(previous, live, long_saturated(live), NOW) == pytest.approx(learned)


def test_the_floor_is_demand_over_capacity() -> None:
    figure = capacity_figure(5200.0, 1300.0, 2, 0.1, "group")
    assert figure is not None
    assert (figure.source, figure.replicas) == ("capacity", 4)
    assert figure.text == "demand 5200 tokens/s at the learned 1300 tokens/s per group asks for 4"
    assert capacity_figure(None, 1300.0, 2, 0.1, "group") is None
    assert capacity_figure(5200.0, None, 2, 0.1, "group") is None


def test_the_floor_raises_the_count_above_the_load_signals() -> None:
    history = History(capacity_per_unit=1000.0)
    signals = Signals(units=units(2, inflight=2.0, waiting=0.0), demand_tokens_per_second=3900.0)
    decision = autoscale(policy(capacity_utilization=1.0), signals, 0.0, history)
    assert decision.recommendations == {"inflight": 1, "capacity": 4}
    assert decision.desired == 4
    assert decision.history.capacity_per_unit == 1000.0


def test_the_floor_can_be_turned_off() -> None:
    signals = Signals(units=units(2, inflight=2.0), demand_tokens_per_second=3900.0)
    decision = autoscale(policy(capacity_floor=False), signals, 0.0, History(capacity_per_unit=1000.0))
    assert decision.recommendations == {"inflight": 1}


def test_capacity_is_learned_in_the_pass_and_kept_in_the_history() -> None:
    signals = Signals(
        units=units(2, inflight=10.0, waiting=4.0, tokens_per_second=800.0), demand_tokens_per_second=4000.0
    )
    queued = History(saturated=(("g0", -SATURATED_FOR), ("g1", -SATURATED_FOR)))
    decision = autoscale(policy(capacity_utilization=1.0), signals, 0.0, queued)
    assert decision.history.capacity_per_unit == 800.0
    assert decision.recommendations["capacity"] == 5


def test_a_vanishing_capacity_asks_for_max_not_for_infinity() -> None:
    history = History(capacity_per_unit=5e-324)
    decision = autoscale(
        policy(max_replicas=7), Signals(units=units(1), demand_tokens_per_second=10.0), 0.0, history
    )
    assert decision.recommendations["capacity"] == 1_000_000_000
    assert decision.desired == 7


def test_the_batch_estimate_is_littles_law_over_the_ready_units_request_time() -> None:
    live = (
        UnitSignals("a", True, request_seconds=5.0),
        UnitSignals("b", True, request_seconds=7.0),
        UnitSignals("c", True, request_seconds=None),  # no request finished in the window
        UnitSignals("d", False, request_seconds=1.0),  # not ready
    )
    # 16 requests at once, each holding its place 6 s on average, 1500 tokens each: 4000 tokens/s.
    assert batch_rate(live, 16, 1500.0) == pytest.approx(4000.0)
    assert batch_rate(live, None, 1500.0) is None  # the batch size is not known
    assert batch_rate(units(2), 16, 1500.0) is None  # no request time known


def test_the_batch_estimate_stands_in_until_a_capacity_is_learned() -> None:
    # 6000 tokens/s in 4 requests/s is 1500 tokens per request; 16 at once for 8 s each is 3000
    # tokens/s per unit: the demand needs 2 of 4 unsaturated units (the in-flight target asks 1).
    signals = Signals(
        units=units(4, inflight=1.0, waiting=0.0, request_seconds=8.0),
        demand_tokens_per_second=6000.0,
        demand_requests_per_second=4.0,
        max_running=16,
    )
    chosen = policy(capacity_utilization=1.0)
    decision = autoscale(chosen, signals, 0.0, History())
    assert decision.recommendations == {"inflight": 1, "capacity": 2}
    assert "at the batch-estimated 3000 tokens/s per group asks for 2" in decision.reason
    assert decision.history.capacity_per_unit is None  # an estimate, not written as learned
    # A capacity learned from saturated units wins: 6000 / 1000 = 6.
    learned = autoscale(chosen, signals, 0.0, History(capacity_per_unit=1000.0))
    assert learned.recommendations["capacity"] == 6
    # So does nothing: without the batch size no floor is planned.
    blind = autoscale(chosen, dataclasses.replace(signals, max_running=None), 0.0, History())
    assert blind.recommendations == {"inflight": 1}
