"""The conditions and target an autoscaler reads from and writes into an AutoscalingPolicy (pure)."""

from __future__ import annotations

from dataclasses import replace

from phalanx.api.autoscalingpolicy import (
    CONDITION_CONFLICT,
    CONDITION_READY,
    CONDITION_TARGET_FOUND,
    AutoscalingPolicyStatus,
    TargetScalingStatus,
)
from phalanx.api.base import Condition
from phalanx.autoscale.from_api import core_policy
from phalanx.autoscale.policy_status import (
    decided,
    false_condition,
    role_pass_period,
    target_name,
    with_conditions,
)
from phalanx.autoscale.types import RolePolicies
from tests.unit.api.test_autoscalingpolicy import PREFILL_DECODE, WAITING_ON_PODS, ours
from tests.unit.autoscale.test_from_api import policy

T0 = "2026-12-07T10:00:00.000000Z"
T1 = "2026-12-07T10:00:15.000000Z"


def by_type(status: AutoscalingPolicyStatus) -> dict[str, Condition]:
    return {c.type: c for c in status.conditions}


def test_conditions_start_on_an_empty_status_sorted_by_type() -> None:
    status = with_conditions(None, decided(["waiting 12 over target 6"]), T0)
    assert [c.type for c in status.conditions] == sorted(
        [CONDITION_CONFLICT, CONDITION_READY, CONDITION_TARGET_FOUND]
    )
    ready = by_type(status)[CONDITION_READY]
    assert (ready.status, ready.reason, ready.message) == ("True", "Decided", "waiting 12 over target 6")
    assert {c.last_transition_time for c in status.conditions} == {T0}


def test_an_unchanged_value_keeps_its_transition_time_and_takes_the_new_message() -> None:
    first = with_conditions(None, decided(["a"]), T0)
    again = with_conditions(first, decided(["b"]), T1)
    ready = by_type(again)[CONDITION_READY]
    assert (ready.message, ready.last_transition_time) == ("b", T0)


def test_a_changed_value_is_stamped_now_and_other_conditions_stay() -> None:
    first = with_conditions(None, decided(["a"]), T0)
    lost = false_condition(CONDITION_TARGET_FOUND, "TargetNotFound", "no ModelServing default/chat")
    after = with_conditions(first, (lost,), T1)
    found = by_type(after)[CONDITION_TARGET_FOUND]
    assert (found.status, found.reason, found.last_transition_time) == ("False", "TargetNotFound", T1)
    assert by_type(after)[CONDITION_READY] == by_type(first)[CONDITION_READY]


def test_the_rest_of_the_status_is_kept() -> None:
    decision = TargetScalingStatus(current_replicas=1, desired_replicas=2, reason="waiting 12 over 6")
    status = AutoscalingPolicyStatus(observed_generation=3, homogeneous_status=decision)
    decided_once = with_conditions(status, decided(["x"]), T0)
    assert decided_once.model_copy(update={"conditions": []}) == status


def test_target_name_of_each_kind_of_policy() -> None:
    assert target_name(policy(ours(WAITING_ON_PODS))) == "chat"
    assert target_name(policy(ours(PREFILL_DECODE))) == "pd-serving"


def test_roles_are_decided_together_at_the_shortest_period() -> None:
    roles = core_policy(policy(ours(PREFILL_DECODE)))
    assert isinstance(roles, RolePolicies)
    assert role_pass_period(roles) == 15.0  # the policy's default period
    slow = replace(roles.roles["decode"], period=40.0)
    fast = replace(roles.roles["prefill"], period=5.0)
    assert role_pass_period(replace(roles, roles={"decode": slow, "prefill": fast})) == 5.0
