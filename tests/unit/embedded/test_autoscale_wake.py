"""A request the router holds at zero makes due at once the policies whose target serves its model
and has no unit, at most once per `WAKE_SPACING` after a pass; nothing else is woken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.modelserving import ModelServing
from phalanx.embedded.autoscaler import WAKE_SPACING, Autoscaler, at_zero
from phalanx.runtimes.local.runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[3]
MODEL = "tiny-test"  # what the quickstart serves


def quickstart(replicas: int) -> ModelServing:
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["spec"]["replicas"] = replicas
    return ModelServing.model_validate(data)


def whole(name: str = "load") -> AutoscalingPolicy:
    return AutoscalingPolicy.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "metrics": [{"name": "inflight", "targetValue": 2}],
                "homogeneousTarget": {
                    "minReplicas": 0,
                    "maxReplicas": 3,
                    "target": {"targetRef": {"name": "quickstart"}},
                },
            },
        }
    )


def on_roles(role: str) -> AutoscalingPolicy:
    return AutoscalingPolicy.model_validate(
        {
            "metadata": {"name": "roles"},
            "spec": {
                "metrics": [{"name": "inflight", "targetValue": 2}],
                "disaggregatedTarget": {
                    "targetRef": {"name": "quickstart"},
                    "roles": {role: {"minReplicas": 0, "maxReplicas": 2}},
                },
            },
        }
    )


def test_at_zero_is_no_group_or_a_scaled_role_at_zero() -> None:
    assert at_zero(quickstart(0), whole())
    assert not at_zero(quickstart(1), whole())
    role = quickstart(1).spec.template.roles[0]
    no_role = quickstart(1)
    no_role.spec.template.roles[0] = role.model_copy(update={"replicas": 0})
    assert at_zero(no_role, on_roles(role.name))
    assert not at_zero(quickstart(1), on_roles(role.name))


@pytest.fixture
async def runtime(tmp_path: Path) -> LocalRuntime:
    return LocalRuntime(tmp_path / "state")


async def scaler_with(runtime: LocalRuntime, serving: ModelServing, now: list[float]) -> Autoscaler:
    await runtime.apply_serving(serving)
    autoscaler = Autoscaler(runtime, "", clock=lambda: now[0])
    autoscaler.apply(whole())
    (held,) = autoscaler.held.values()
    held.due, held.passed = now[0] + 15.0, now[0] - 5.0  # a pass 5 s ago, the next in 15 s
    return autoscaler


async def test_a_held_request_for_the_targets_model_at_zero_makes_it_due_now(runtime: LocalRuntime) -> None:
    now = [1000.0]
    autoscaler = await scaler_with(runtime, quickstart(0), now)
    autoscaler.held_at_zero(MODEL)
    await autoscaler.wake_held()
    (held,) = autoscaler.held.values()
    assert held.due <= now[0]
    held.due = now[0] + 15.0
    await autoscaler.wake_held()  # each report wakes once
    assert held.due == now[0] + 15.0


async def test_right_after_a_pass_the_wake_waits_for_the_spacing(runtime: LocalRuntime) -> None:
    now = [1000.0]
    autoscaler = await scaler_with(runtime, quickstart(0), now)
    (held,) = autoscaler.held.values()
    held.passed = now[0] - 0.25
    autoscaler.held_at_zero(MODEL)
    await autoscaler.wake_held()
    assert held.due == pytest.approx(now[0] - 0.25 + WAKE_SPACING)


@pytest.mark.parametrize(("replicas", "model"), [(1, MODEL), (0, "another-model")])
async def test_a_target_with_a_group_or_another_model_is_not_woken(
    runtime: LocalRuntime, replicas: int, model: str
) -> None:
    now = [1000.0]
    autoscaler = await scaler_with(runtime, quickstart(replicas), now)
    autoscaler.held_at_zero(model)
    await autoscaler.wake_held()
    (held,) = autoscaler.held.values()
    assert held.due == now[0] + 15.0


async def test_a_serving_started_from_its_file_is_not_lowered_before_its_pods_exist(
    runtime: LocalRuntime,
) -> None:
    # minReplicas 0, spec.replicas 1, and no pod yet (the controller has not run): the group the
    # spec asks for is starting, not missing, so the first pass keeps it rather than going to zero.
    now = [1000.0]
    autoscaler = await scaler_with(runtime, quickstart(1), now)
    (held,) = autoscaler.held.values()
    held.due = now[0]
    async with aiohttp.ClientSession() as session:
        await autoscaler.tick(session)
    ms = await runtime.get_serving("default", "quickstart")
    assert ms is not None and ms.spec.replicas == 1
    assert held.policy.status is not None and held.policy.status.homogeneous_status is not None
    assert held.policy.status.homogeneous_status.current_replicas == 1
