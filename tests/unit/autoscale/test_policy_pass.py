"""One policy's pass once its pages are read: each role's signals, the decisions from the history
kept or rebuilt from the status, the status to write and what to do with each decision."""

from __future__ import annotations

from typing import Any

from phalanx.api.autoscalingpolicy import AutoscalingPolicyStatus
from phalanx.autoscale.from_api import core_policy
from phalanx.autoscale.observe.assemble import UnitState
from phalanx.autoscale.observe.engine import UnitFields
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.policy_pass import decide, role_signals
from phalanx.autoscale.types import History, Policy, RolePolicies, Signals, UnitSignals
from tests.unit.api.test_autoscalingpolicy import PREFILL_DECODE, ours
from tests.unit.autoscale.test_from_api import policy

NOW = 1_800_000_000.0


def homogeneous(low: int, *, observe: bool = False) -> Policy:
    data: dict[str, Any] = {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "AutoscalingPolicy",
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {
            "observeOnly": observe,
            "metrics": [{"name": "num_requests_waiting", "targetValue": 4}],
            "homogeneousTarget": {
                "minReplicas": low,
                "maxReplicas": 4,
                "target": {"targetRef": {"kind": "ModelServing", "name": "chat"}},
            },
        },
    }
    found = core_policy(policy(data))
    assert isinstance(found, Policy)
    return found


def roles() -> RolePolicies:
    found = core_policy(policy(ours(PREFILL_DECODE)))
    assert isinstance(found, RolePolicies)
    return found


def ready(name: str) -> UnitState:
    return UnitState(name=name, ready=True)


def test_each_role_sees_its_own_units_in_flight_and_room_and_the_targets_arrival_rate() -> None:
    units = {"prefill": [ready("pd-0-prefill-0")], "decode": [ready("pd-0-decode-0"), ready("pd-0-decode-1")]}
    engines = {"pd-0-decode-0": UnitFields(waiting=3), "pd-0-prefill-0": UnitFields(waiting=1)}
    router = RouterFigures(
        {"pd-0-prefill-0": 2, "pd-0-decode-0": 5, "pd-0-decode-1": 1},
        queue=0,
        held=0,
        arrivals_per_second=4.0,
    )
    signals = role_signals(units, engines, router, {"prefill": 3, "decode": None})
    decode = signals["decode"]
    assert [(u.name, u.inflight, u.waiting) for u in decode.units] == [
        ("pd-0-decode-0", 5, 3),
        ("pd-0-decode-1", 1, None),
    ]
    assert [(u.name, u.inflight) for u in signals["prefill"].units] == [("pd-0-prefill-0", 2)]
    assert (signals["prefill"].placeable, decode.placeable) == (3, None)
    assert decode.demand_requests_per_second == 4.0
    # Without the router: every router figure unknown, never 0.
    alone = role_signals({None: [ready("chat-0")]}, {}, None, {})
    assert alone[None].units[0].inflight is None
    assert alone[None].demand_requests_per_second is None


def test_a_whole_serving_is_raised_to_its_minimum_and_the_history_is_rebuilt_from_the_status() -> None:
    first = decide(
        "chat",
        homogeneous(2),
        {None: role_signals({None: [ready("chat-0")]}, {}, None, {})[None]},
        NOW,
        None,
        None,
        lambda _: 1,
    )
    ((role, one),) = first.acts
    assert (role, one.replicas) == (None, 2)
    assert first.status.homogeneous_status is not None
    assert first.status.homogeneous_status.desired_replicas == 2
    assert first.history is not None and first.roles is None
    # A new replica (kept None) reads the records back from the status it wrote.
    again = decide("chat", homogeneous(2), {}, NOW + 15, first.status, None, lambda _: 2)
    assert again.status.homogeneous_status is not None
    assert [(r.previous, r.desired) for r in again.status.homogeneous_status.history][:1] == [(1, 2)]
    assert again.acts[0][1].replicas is None  # the spec holds 2 already
    # An empty history kept in memory is used as it is (a policy pointed at another target).
    two = role_signals({None: [ready("chat-0"), ready("chat-1")]}, {}, None, {})
    fresh = decide("chat", homogeneous(2), two, NOW + 15, first.status, History(), lambda _: 2)
    assert fresh.status.homogeneous_status is not None
    assert fresh.status.homogeneous_status.history == []


def test_observe_only_reports_once_from_what_the_status_said() -> None:
    watching = homogeneous(2, observe=True)
    first = decide("chat", watching, {}, NOW, None, None, lambda _: 0)
    assert [e.reason for e in first.acts[0][1].events] == ["AutoscaleObserved"]
    second = decide("chat", watching, {}, NOW + 15, first.status, first.history, lambda _: 0)
    assert second.acts[0][1].events == ()
    assert second.acts[0][1].replicas is None


def test_roles_are_decided_together_with_a_status_entry_and_an_act_per_role() -> None:
    counts = {"prefill": 1, "decode": 1}
    signals = role_signals({"prefill": [ready("p")], "decode": [ready("d")]}, {}, None, {})
    done = decide(
        "pd", roles(), signals, NOW, AutoscalingPolicyStatus(), None, lambda role: counts[str(role)]
    )
    assert done.history is None and done.roles is not None and set(done.roles) == {"prefill", "decode"}
    assert done.status.disaggregated_status is not None
    assert [r.name for r in done.status.disaggregated_status.roles] == ["decode", "prefill"]
    assert [role for role, _ in done.acts] == ["decode", "prefill"]
    decode = dict(done.acts)["decode"]
    assert decode.replicas == 2  # decode's minReplicas is 2
    assert decode.change.startswith("role decode replicas 1 -> 2: ")
    assert done.reasons[0].startswith("decode: ")


def test_the_roles_new_units_are_placed_together_in_the_room_the_shell_gives() -> None:
    signals: dict[str | None, Signals] = {
        "prefill": Signals(units=(UnitSignals("p", True, prefill_queued_tokens=24000.0),)),
        "decode": Signals(units=(UnitSignals("d0", True, waiting=8.0), UnitSignals("d1", True, waiting=8.0))),
    }
    counts = {"prefill": 1, "decode": 2}
    alone = decide("pd", roles(), signals, NOW, None, None, lambda role: counts[str(role)])
    assert {role: one.replicas for role, one in alone.acts} == {"decode": 4, "prefill": 3}
    one_gpu_each = 3  # room for 3 of the 4 new units
    done = decide(
        "pd",
        roles(),
        signals,
        NOW,
        None,
        None,
        lambda role: counts[str(role)],
        lambda more: sum(more.values()) <= one_gpu_each,
    )
    # Asks of 2 and 2: a unit each in turn (decode first on the tie), then decode's second.
    assert {role: one.replicas for role, one in done.acts} == {"decode": 4, "prefill": 2}
    split = (
        "the free room holds 3 of the 4 new units the roles ask for together (decode 2 of 2, prefill 1 of 2)"
    )
    assert all(split in reason for reason in done.reasons)
