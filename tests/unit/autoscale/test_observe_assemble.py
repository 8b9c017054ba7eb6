"""Signals from the runtime's units, the engines' fields and the router's figures."""

from __future__ import annotations

import pytest

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.observe.assemble import UnitState, build_signals
from phalanx.autoscale.observe.engine import UnitFields
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.policy_pass import role_signals
from phalanx.autoscale.types import History, MetricTarget, Policy, UnitSignals
from tests.unit.autoscale.core_builders import policy

ENGINE = {
    "waiting": 2,
    "running": 8,
    "kv_usage": 0.6,
    "ttft_p95": 0.4,
    "itl_p95": 0.03,
    "tokens_per_second": 900,
}
BUSY = UnitFields(**ENGINE, prompt_tokens_per_second=200)


def test_units_carry_the_runtime_s_state_and_their_engine_s_fields() -> None:
    units = [UnitState("g-0", ready=True), UnitState("g-1", ready=False, pending_since=40.0)]
    router = RouterFigures(inflight={"g-0": 7, "g-1": 0}, queue=None)
    signals = build_signals(units, {"g-0": BUSY}, router, placeable=3)
    # Every engine field but the prompt rate, which only serves the demand.
    assert signals.units[0] == UnitSignals(name="g-0", ready=True, inflight=7, **ENGINE)
    assert signals.units[1] == UnitSignals(name="g-1", ready=False, pending_since=40.0, inflight=0)
    assert (signals.admission_queue, signals.placeable) == (0, 3)


def test_a_unit_that_is_not_ready_has_no_engine_fields_even_with_a_page() -> None:
    signals = build_signals([UnitState("g-0", ready=False)], {"g-0": BUSY}, None)
    assert signals.units == (UnitSignals(name="g-0", ready=False),)
    assert signals.demand_tokens_per_second is None


def test_a_unit_without_a_page_or_router_figure_is_unknown_not_idle() -> None:
    signals = build_signals([UnitState("g-0", ready=True)], {}, RouterFigures())
    assert signals.units == (UnitSignals(name="g-0", ready=True),)


def test_the_slot_queue_is_shared_by_the_units_that_take_requests() -> None:
    units = [
        UnitState("g-0", ready=True),
        UnitState("g-1", ready=True),
        UnitState("g-2", ready=True, draining=True),
        UnitState("g-3", ready=False, pending_since=1.0),
    ]
    signals = build_signals(units, {}, RouterFigures(queue=9, held=4))
    assert [u.queue for u in signals.units] == [4.5, 4.5, None, None]
    # Held requests wait for the target, not for a unit: counted once, in the admission queue.
    assert signals.admission_queue == 4
    assert [u.draining for u in signals.units] == [False, False, True, False]


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        ([], 7),  # zero units: everything the router holds for the target
        ([UnitState("g-0", ready=False, pending_since=0.0)], 7),  # starting: nobody to queue for yet
        ([UnitState("g-0", ready=True, draining=True)], 7),
    ],
)
def test_with_no_unit_to_take_requests_the_router_s_requests_are_the_admission_queue(
    units: list[UnitState], expected: int
) -> None:
    assert build_signals(units, {}, RouterFigures(queue=2, held=5)).admission_queue == expected


def test_unknown_router_figures_add_nothing() -> None:
    assert build_signals([], {}, RouterFigures()).admission_queue == 0
    assert build_signals([], {}, None).admission_queue == 0


def test_demand_is_the_router_s_arriving_prompt_tokens_times_the_served_mix() -> None:
    units = [UnitState("g-0", ready=True), UnitState("g-1", ready=True), UnitState("g-2", ready=True)]
    engines = {
        "g-0": UnitFields(tokens_per_second=900, prompt_tokens_per_second=300),
        "g-1": UnitFields(tokens_per_second=300, prompt_tokens_per_second=100),
        "g-2": UnitFields(tokens_per_second=500),  # no prompt figure: left out of the mix
    }
    router = RouterFigures(arrival_prompt_tokens_per_second=800)
    # 1200 tokens served per 400 prompt tokens: 3 tokens per arriving prompt token.
    assert build_signals(units, engines, router).demand_tokens_per_second == pytest.approx(2400)


def test_with_nothing_served_the_demand_is_the_prompt_tokens_alone() -> None:
    signals = build_signals([], {}, RouterFigures(held=2, arrival_prompt_tokens_per_second=150))
    assert signals.demand_tokens_per_second == 150


def test_without_the_router_s_figure_the_demand_is_what_the_units_served() -> None:
    units = [UnitState("g-0", ready=True), UnitState("g-1", ready=True), UnitState("g-2", ready=True)]
    engines = {"g-0": BUSY, "g-1": UnitFields(tokens_per_second=300), "g-2": UnitFields()}
    assert build_signals(units, engines, RouterFigures()).demand_tokens_per_second == 1200
    assert build_signals(units, {}, None).demand_tokens_per_second is None


def test_the_caller_s_demand_wins() -> None:
    router = RouterFigures(arrival_prompt_tokens_per_second=800)
    signals = build_signals([], {}, router, demand_tokens_per_second=2000.0)
    assert signals.demand_tokens_per_second == 2000.0


def test_the_core_starts_a_unit_for_requests_held_at_zero() -> None:
    policy = Policy(min_replicas=0, max_replicas=4, metrics=(MetricTarget("queue", 5),))
    signals = build_signals([], {}, RouterFigures(held=3))
    decision = autoscale(policy, signals, 100.0, History())
    assert decision.desired == 1


def test_the_core_reads_the_shared_queue_once() -> None:
    policy = Policy(min_replicas=1, max_replicas=10, metrics=(MetricTarget("queue", 5),))
    units = [UnitState("g-0", ready=True), UnitState("g-1", ready=True)]
    signals = build_signals(units, {}, RouterFigures(inflight={"g-0": 4, "g-1": 4}, queue=30))
    decision = autoscale(policy, signals, 100.0, History())
    assert decision.recommendations["queue"] == 6  # 30 waiting / 5 per unit, not 60


def test_a_unit_s_request_seconds_reach_the_core() -> None:
    signals = build_signals([UnitState("g-0", ready=True)], {"g-0": UnitFields(request_seconds=2.5)}, None)
    assert signals.units[0].request_seconds == 2.5


def test_the_startup_is_the_longest_of_the_ready_units() -> None:
    units = [
        UnitState("g-0", ready=True, startup_seconds=80.0),
        UnitState("g-1", ready=True, startup_seconds=120.0),
        UnitState("g-2", ready=True),  # restarted: its start is not known
        UnitState("g-3", ready=False, pending_since=10.0, startup_seconds=500.0),  # not ready: ignored
    ]
    assert build_signals(units, {}, None).startup_seconds == 120.0
    assert build_signals([UnitState("g-0", ready=True)], {}, None).startup_seconds is None
    assert build_signals([], {}, None).startup_seconds is None


def test_the_batch_size_is_the_smallest_a_ready_unit_runs_else_any_unit_s() -> None:
    ready = [UnitState("g-0", ready=True, max_running=256), UnitState("g-1", ready=True, max_running=64)]
    starting = UnitState("g-2", ready=False, pending_since=0.0, max_running=8)
    assert build_signals([*ready, starting], {}, None).max_running == 64
    # At zero ready units the starting units' arguments still say what a unit will run.
    assert build_signals([starting], {}, None).max_running == 8
    assert build_signals([UnitState("g-0", ready=True)], {}, None).max_running is None


def test_the_batch_estimate_reaches_the_core_s_floor() -> None:
    # 4 units run 16 at once, 8 s each; the router sees 4 requests/s of 500 prompt tokens and the
    # units served 3 tokens per prompt token: 1500 tokens a request, 3000 tokens/s a unit.
    units = [UnitState(f"g-{i}", ready=True, max_running=16) for i in range(4)]
    engine = UnitFields(tokens_per_second=1500.0, prompt_tokens_per_second=500.0, request_seconds=8.0)
    router = RouterFigures(
        inflight=dict.fromkeys((u.name for u in units), 1.0),
        arrivals_per_second=4.0,
        arrival_prompt_tokens_per_second=2000.0,
    )
    signals = role_signals({None: units}, dict.fromkeys((u.name for u in units), engine), router, {})[None]
    chosen = policy(capacity_utilization=1.0)
    decision = autoscale(chosen, signals, 0.0, History())
    assert "at the batch-estimated 3000 tokens/s per group asks for 2" in decision.reason
