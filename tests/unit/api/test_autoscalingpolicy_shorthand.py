"""ModelDeployment.spec.autoscaling: its checks, the AutoscalingPolicy it renders, and the compiler
handing that policy out with the ModelServing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phalanx.api import load_text
from phalanx.api.autoscaling_shorthand import autoscaling_policy_for
from phalanx.api.autoscaling_validation import check_target, validate_autoscaling_policy
from phalanx.api.deployment_validation import validate_model_deployment
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.compiler import compile_deployment


def deployment(autoscaling: dict[str, Any] | None, replicas: int = 2) -> ModelDeployment:
    spec: dict[str, Any] = {
        "model": "tiny-test",
        "engine": "sim",
        "gpusPerNode": 1,
        "gpuMemory": "24Gi",
        "gpuProduct": "simulated",
        "replicas": replicas,
    }
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return ModelDeployment.model_validate({"metadata": {"name": "tiny", "namespace": "team"}, "spec": spec})


def problems(autoscaling: dict[str, Any] | None, replicas: int = 2) -> list[str]:
    return [p.render() for p in validate_model_deployment(deployment(autoscaling, replicas))]


def test_no_autoscaling_no_policy() -> None:
    md = deployment(None)
    assert problems(None) == []
    assert autoscaling_policy_for(md, "tiny") is None
    assert compile_deployment(md).autoscaling_policy is None


def test_the_rendered_policy() -> None:
    md = deployment(
        {"minReplicas": 0, "maxReplicas": 4, "queuePerGroup": 3, "itlSeconds": 0.00005, "observeOnly": True}
    )
    policy = autoscaling_policy_for(md, "tiny-serving")
    assert policy is not None
    assert policy.to_dict() == {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "AutoscalingPolicy",
        "metadata": {
            "name": "tiny",
            "namespace": "team",
            "labels": {"serving.phalanx.dev/deployment": "tiny"},
            "annotations": {},
        },
        "spec": {
            "tolerancePercent": 10,
            "metrics": [{"name": "queue", "targetValue": "3"}, {"name": "itl_p95", "targetValue": "0.00005"}],
            # The shorthand's own scale-up limit, looser than Kthena's default of 4 or 100% per minute.
            "behavior": {
                "scaleUp": {
                    "stablePolicy": {
                        "instances": 12,
                        "percent": 100,
                        "period": "1m",
                        "selectPolicy": "Or",
                        "stabilizationWindow": "0s",
                    }
                }
            },
            "homogeneousTarget": {
                "target": {
                    "targetRef": {"kind": "ModelServing", "name": "tiny-serving"},
                    "metricSources": {},
                },
                "minReplicas": 0,
                "maxReplicas": 4,
            },
            "period": "15s",
            "pendingTimeout": "5m",
            "observeOnly": True,
            "historyLimit": 32,
            "capacityFloor": True,
            "capacityUtilizationPercent": 90,
            "backlogHorizon": "2m",
        },
    }
    assert validate_autoscaling_policy(policy) == []


def test_the_compiler_renders_the_policy_for_its_model_serving() -> None:
    compiled = compile_deployment(deployment({"maxReplicas": 3, "kvUsage": 0.75}))
    policy = compiled.autoscaling_policy
    assert policy is not None
    assert check_target(policy, compiled.model_serving) == []
    target = policy.spec.homogeneous_target
    assert target is not None
    assert target.target.target_ref.name == compiled.model_serving.metadata.name
    assert [(m.name, m.target_value) for m in policy.spec.metrics] == [("kv_usage", "0.75")]


@pytest.mark.parametrize(
    ("autoscaling", "replicas", "expected"),
    [
        (
            {"minReplicas": 4, "maxReplicas": 2, "queuePerGroup": 1},
            3,
            "error: spec.autoscaling.minReplicas: must not exceed maxReplicas (2) (got 4); "
            "fix: lower minReplicas to at most 2, or raise maxReplicas",
        ),
        (
            {"maxReplicas": 2},
            2,
            "error: spec.autoscaling: has no target to scale on; "
            "fix: give at least one of queuePerGroup (e.g. 4), kvUsage (e.g. 0.8), ttftSeconds, itlSeconds",
        ),
        (
            {"minReplicas": 1, "maxReplicas": 2, "ttftSeconds": 2},
            5,
            "warning: spec.replicas: is outside autoscaling's 1..2: "
            "the autoscaler moves it inside at its first decision (got 5); "
            "fix: set replicas within minReplicas..maxReplicas, or leave it to the autoscaler",
        ),
    ],
)
def test_checks(autoscaling: dict[str, Any], replicas: int, expected: str) -> None:
    assert problems(autoscaling, replicas) == [expected]


def test_field_bounds_come_from_the_file_with_their_lines() -> None:
    text = """apiVersion: serving.phalanx.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: tiny
spec:
  model: tiny-test
  engine: sim
  gpusPerNode: 1
  gpuMemory: 24Gi
  autoscaling:
    maxReplicas: 0
    kvUsage: 1.5
    queuePerGroup: -1
"""
    loaded = load_text(text, source="md.yaml")
    assert [(p.field, p.line) for p in loaded.errors] == [
        ("spec.autoscaling.maxReplicas", 11),
        ("spec.autoscaling.kvUsage", 12),
        ("spec.autoscaling.queuePerGroup", 13),
    ]


# -------------------------------------------------------------------------- files: phalanx validate/render

SERVING_AND_POLICY = """apiVersion: serving.phalanx.dev/v1alpha1
kind: ModelServing
metadata:
  name: pd-serving
spec:
  template:
    roles:
    - name: prefill
      entryTemplate:
        spec:
          containers: [{name: engine, image: x}]
    - name: generate
      entryTemplate:
        spec:
          containers: [{name: engine, image: x}]
---
"""


def test_a_file_with_a_policy_checks_it_against_the_serving_beside_it() -> None:
    from tests.unit.api.test_autoscalingpolicy import PREFILL_DECODE

    text = SERVING_AND_POLICY + PREFILL_DECODE.lstrip().replace(
        "workload.serving.volcano.sh/v1alpha1\nkind: AutoscalingPolicy",
        "serving.phalanx.dev/v1alpha1\nkind: AutoscalingPolicy",
    )
    loaded = load_text(text, source="pd.yaml")
    assert [p.render("pd.yaml") for p in loaded.errors] == [
        "pd.yaml:37:7: error: spec.disaggregatedTarget.roles.decode: "
        "is not a role of ModelServing pd-serving (got 'decode'); "
        "fix: use one of its roles: prefill, generate"
    ]
    assert [p.name for p in loaded.policies] == ["pd"]


def test_a_kthena_policy_in_a_file_is_refused_for_its_api_version_with_the_line() -> None:
    from tests.unit.api.test_autoscalingpolicy import WAITING_ON_PODS

    loaded = load_text(WAITING_ON_PODS.lstrip(), source="k.yaml")
    assert [(p.field, p.line) for p in loaded.errors] == [("apiVersion", 1)]
    assert loaded.policies == []


def test_validate_and_render_read_policies(tmp_path: Path) -> None:
    from tests.unit.api.test_autoscalingpolicy import WAITING_ON_PODS

    path = tmp_path / "policy.yaml"
    path.write_text(WAITING_ON_PODS.replace("workload.serving.volcano.sh", "serving.phalanx.dev"))
    result = subprocess.run(
        [sys.executable, "-m", "phalanx", "validate", "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "valid (AutoscalingPolicy/chat-autoscaler)" in result.stderr
    md = tmp_path / "md.yaml"
    md.write_text(
        "apiVersion: serving.phalanx.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: tiny}\n"
        "spec: {model: tiny-test, engine: sim, gpusPerNode: 1, gpuMemory: 24Gi, gpuProduct: simulated,\n"
        "  autoscaling: {maxReplicas: 3, queuePerGroup: 4}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "phalanx", "render", "-f", str(md), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    policies = [item for item in items if item["kind"] == "AutoscalingPolicy"]
    assert [p["spec"]["homogeneousTarget"]["target"]["targetRef"]["name"] for p in policies] == ["tiny"]


def test_phalanx_up_takes_the_policies_of_a_file() -> None:
    from phalanx.embedded.specs import servings_from_text

    text = SERVING_AND_POLICY + (
        "apiVersion: serving.phalanx.dev/v1alpha1\nkind: AutoscalingPolicy\nmetadata: {name: whole}\n"
        "spec:\n  metrics: [{name: queue, targetValue: 4}]\n"
        "  homogeneousTarget: {minReplicas: 1, maxReplicas: 2, target: {targetRef: {name: pd-serving}}}\n"
    )
    loaded = servings_from_text(text, "f.yaml")
    assert loaded.errors == []
    assert [s.metadata.name for s in loaded.servings] == ["pd-serving"]
    assert [p.name for p in loaded.policies] == ["whole"]
    assert loaded.warnings == []
