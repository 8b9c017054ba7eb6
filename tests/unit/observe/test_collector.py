"""The status collector on a real prometheus_client registry, read back from its exposition."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from phalanx.observe.collector import Snapshot, StatusCollector
from tests.unit.observe.test_figures import T1, T2, T3, entry, group, policy, serving


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def test_servings_and_policies_exported_and_decisions_counted_once() -> None:
    state: dict[str, Any] = {
        "servings": [
            serving(replicas=2, availableReplicas=1, updatedReplicas=2, groups=[group(0, "Ready", "b")])
        ],
        "policies": [
            policy(
                {"homogeneousStatus": {"desiredReplicas": 2, "history": [entry(T1, 1, 2, "x at target 5")]}}
            )
        ],
    }
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: Snapshot(state["servings"], state["policies"])))
    ms = {"namespace": "team", "modelserving": "llama"}
    target = {**ms, "autoscalingpolicy": "scale-llama", "role": ""}
    decided = {**target, "direction": "up", "reason": "signal"}

    found = samples(registry)
    assert value(found, "phalanx_modelserving_desired_groups", **ms) == 3
    assert value(found, "phalanx_modelserving_groups", **ms) == 2
    assert value(found, "phalanx_modelserving_ready_groups", **ms) == 1
    assert value(found, "phalanx_modelserving_updated_groups", **ms) == 2
    assert value(found, "phalanx_modelserving_rollout_in_progress", **ms) == 0
    assert value(found, "phalanx_modelserving_groups_by_phase", **ms, phase="Ready") == 1
    assert value(found, "phalanx_modelserving_groups_by_phase", **ms, phase="Pending") == 0
    assert value(found, "phalanx_modelserving_groups_by_revision", **ms, revision="b") == 1
    assert value(found, "phalanx_autoscaling_desired_replicas", **target) == 2
    assert value(found, "phalanx_autoscaling_panic_mode", **target) == 0
    assert value(found, "phalanx_autoscaling_decisions_total", **decided) == 1

    assert value(samples(registry), "phalanx_autoscaling_decisions_total", **decided) == 1  # not again
    unit = state["policies"][0]["status"]["homogeneousStatus"]
    unit["history"] = [entry(T2, 2, 3, "x at target 5"), entry(T3, 3, 3, mode="Panic")]
    found = samples(registry)
    assert value(found, "phalanx_autoscaling_decisions_total", **decided) == 2
    assert (
        value(found, "phalanx_autoscaling_decisions_total", **target, direction="none", reason="other") == 1
    )

    state["policies"] = []  # a deleted policy's series go
    assert not [key for key in samples(registry) if key[0].startswith("phalanx_autoscaling")]


def test_nothing_is_read_at_registration_nor_exported_without_state() -> None:
    reads: list[int] = []

    def source() -> Snapshot | None:
        reads.append(1)
        return None

    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatusCollector(source))
    assert reads == []
    assert not [
        key for key in samples(registry) if key[0].startswith(("phalanx_modelserving", "phalanx_autoscaling"))
    ]
    assert reads == [1]
