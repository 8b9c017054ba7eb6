"""What an autoscaler writes into an AutoscalingPolicy's status besides the decision (pure), the
same under `phalanx up` and in the operator: its conditions, each keeping the time it last changed
value, and the target and evaluation period read from the policy."""

from __future__ import annotations

from phalanx.api.autoscalingpolicy import (
    CONDITION_CONFLICT,
    CONDITION_READY,
    CONDITION_TARGET_FOUND,
    AutoscalingPolicy,
    AutoscalingPolicyStatus,
)
from phalanx.api.base import Condition
from phalanx.autoscale.types import RolePolicies


def with_conditions(
    status: AutoscalingPolicyStatus | None, conditions: tuple[Condition, ...], now: str
) -> AutoscalingPolicyStatus:
    """`status` with `conditions` set (by type, sorted); a condition whose value did not change
    keeps its lastTransitionTime, so the time says since when, not when last written."""
    status = status or AutoscalingPolicyStatus()
    kept = {c.type: c for c in status.conditions}
    for condition in conditions:
        old = kept.get(condition.type)
        stamp = old.last_transition_time if old is not None and old.status == condition.status else now
        kept[condition.type] = condition.model_copy(update={"last_transition_time": stamp})
    return status.model_copy(update={"conditions": [kept[t] for t in sorted(kept)]})


def decided(reasons: list[str]) -> tuple[Condition, ...]:
    """The conditions of a pass that decided: target found, no rival, Ready with the reasons."""
    return (
        Condition(type=CONDITION_TARGET_FOUND, status="True", reason="TargetFound"),
        Condition(type=CONDITION_CONFLICT, status="False", reason="SoleAutoscaler"),
        Condition(type=CONDITION_READY, status="True", reason="Decided", message=" ".join(reasons)),
    )


def false_condition(type_: str, reason: str, message: str) -> Condition:
    return Condition(type=type_, status="False", reason=reason, message=message)


def target_name(policy: AutoscalingPolicy) -> str:
    """The name of the ModelServing the policy scales ('' when it names none)."""
    spec = policy.spec
    if spec.homogeneous_target is not None:
        return spec.homogeneous_target.target.target_ref.name
    if spec.disaggregated_target is not None:
        return spec.disaggregated_target.target_ref.name
    return ""


def role_pass_period(policies: RolePolicies) -> float:
    """One pass for all roles, at the shortest of their periods (the policy has one `period`)."""
    return min(p.period for p in policies.roles.values())


def roles_refusal(serving: str, replicas: int) -> Condition | None:
    """A policy on roles scales `roles[].replicas`, the instances of a role in every group: with
    no group there is nothing it can set (the same rule under `phalanx up` and in the operator)."""
    if replicas > 0:
        return None
    message = (
        f"scaling roles needs ModelServing {serving} at spec.replicas 1 or more (it has {replicas}): "
        "roles[].replicas counts instances in each group"
    )
    return false_condition(CONDITION_READY, "NotSupported", message)
