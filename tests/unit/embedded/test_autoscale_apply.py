"""Applying a policy to `phalanx up`'s autoscaler: created, unchanged or configured, and what a
re-apply keeps (the creation time that decides conflicts, the status)."""

from __future__ import annotations

from typing import Any

from phalanx.api.autoscalingpolicy import AutoscalingPolicy, AutoscalingPolicyStatus
from phalanx.embedded.autoscaler import Autoscaler


def policy(name: str = "demo-load", high: int = 3, target: str = "demo") -> AutoscalingPolicy:
    data: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "metrics": [{"name": "inflight", "targetValue": 2}],
            "homogeneousTarget": {
                "minReplicas": 0,
                "maxReplicas": high,
                "target": {"targetRef": {"name": target}},
            },
        },
    }
    return AutoscalingPolicy.model_validate(data)


def scaler(times: list[float]) -> Autoscaler:
    return Autoscaler(None, "", clock=lambda: times[0])  # type: ignore[arg-type]


def test_the_first_apply_creates_it_at_that_time_and_the_same_spec_again_changes_nothing() -> None:
    times = [1796601600.0]
    autoscaler = scaler(times)
    assert autoscaler.apply(policy()) == "created"
    times[0] += 60
    assert autoscaler.apply(policy()) == "unchanged"
    (held,) = autoscaler.policies()
    assert held.metadata.creation_timestamp == "2026-12-07T00:00:00.000000Z"


def test_a_changed_spec_is_configured_keeping_its_creation_time_and_status() -> None:
    times = [1796601600.0]
    autoscaler = scaler(times)
    autoscaler.apply(policy())
    autoscaler.apply(policy("newer"))
    shown = autoscaler.policies()[0].model_copy(
        update={"status": AutoscalingPolicyStatus(observed_generation=4)}
    )
    autoscaler.held[("default", "demo-load")].policy = shown
    times[0] += 60
    assert autoscaler.apply(policy(high=5)) == "configured"
    found = {p.name: p for p in autoscaler.policies()}
    assert found["demo-load"].spec.homogeneous_target is not None
    assert found["demo-load"].spec.homogeneous_target.max_replicas == 5
    assert found["demo-load"].metadata.creation_timestamp == "2026-12-07T00:00:00.000000Z"
    assert found["demo-load"].status == AutoscalingPolicyStatus(observed_generation=4)
    assert [p.name for p in autoscaler.policies()] == ["demo-load", "newer"]


def test_a_policy_pointed_at_another_target_starts_over() -> None:
    autoscaler = scaler([1796601600.0])
    autoscaler.apply(policy())
    held = autoscaler.held[("default", "demo-load")]
    held.policy = held.policy.model_copy(update={"status": AutoscalingPolicyStatus(observed_generation=4)})
    moved = policy()
    assert moved.spec.homogeneous_target is not None
    ref = moved.spec.homogeneous_target.target.target_ref.model_copy(update={"name": "other"})
    target = moved.spec.homogeneous_target.target.model_copy(update={"target_ref": ref})
    homogeneous = moved.spec.homogeneous_target.model_copy(update={"target": target})
    moved = moved.model_copy(
        update={"spec": moved.spec.model_copy(update={"homogeneous_target": homogeneous})}
    )
    assert autoscaler.apply(moved) == "configured"
    (shown,) = autoscaler.policies()
    assert shown.status is None and held.history is None
