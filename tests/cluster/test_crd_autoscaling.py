"""The AutoscalingPolicy CRD on a real API server: Kthena-shaped policies (apiVersion changed) are
stored with the same defaults our model gives, and values the schema forbids are refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from phalanx.api.autoscaling_validation import validate_autoscaling_policy
from phalanx.api.autoscalingpolicy import AutoscalingPolicy, TargetScalingStatus, quantity_value
from phalanx.autoscale.from_api import history_from_status, status_from_decision
from phalanx.autoscale.types import Decision, History
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds
from tests.unit.api.test_autoscalingpolicy import MANIFESTS, ours
from tests.unit.autoscale.test_from_api_history import SAMPLES

pytestmark = pytest.mark.cluster


def dry(cp: ControlPlane, path: str, obj: dict[str, Any]) -> tuple[int, Any]:
    return cp.http("POST", f"{path}?dryRun=All&fieldValidation=Strict", body=obj)


def normal(node: Any) -> Any:
    """Quantities as numbers: the server stores a YAML 6.0 as 6."""
    if isinstance(node, list):
        return [normal(item) for item in node]
    if isinstance(node, dict):
        return {
            k: quantity_value(v) if k in ("targetValue", "minRatio", "maxRatio") else normal(v)
            for k, v in node.items()
        }
    return node


def test_autoscaling_policies_on_a_real_api_server(control_plane: ControlPlane) -> None:
    install_crds(control_plane.client(), PHALANX_CRDS)
    ns = control_plane.new_namespace("asp")
    base = f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{ns}/autoscalingpolicies"
    for name, text in MANIFESTS.items():
        obj = ours(text)
        obj["metadata"]["namespace"] = ns
        code, stored = dry(control_plane, base, obj)
        assert code == 201, (name, stored)
        policy = AutoscalingPolicy.model_validate(stored)
        assert [p.render() for p in validate_autoscaling_policy(policy) if p.severity == "error"] == []
        # What the server defaulted is what our model defaults: reading the file gives the same policy.
        assert normal(policy.spec.to_dict()) == normal(AutoscalingPolicy.model_validate(obj).spec.to_dict())

    written = ours(MANIFESTS["waiting-on-pods"])
    written["metadata"]["namespace"] = ns
    written["spec"]["behavior"] = {"scaleDown": {}, "scaleUp": {"panicPolicy": {}}}
    code, stored = dry(control_plane, base, written)
    assert code == 201, stored
    assert stored["spec"]["behavior"]["scaleDown"] == {
        "instances": 1,
        "percent": 100,
        "period": "15s",
        "selectPolicy": "Or",
    }
    assert stored["spec"]["behavior"]["scaleUp"]["panicPolicy"] == {
        "percent": 1000,
        "period": "0s",
        "panicThresholdPercent": 200,
        "panicModeHold": "60s",
    }
    assert stored["spec"]["tolerancePercent"] == 10
    assert stored["spec"]["period"] == "15s"
    assert (stored["spec"]["capacityUtilizationPercent"], stored["spec"]["backlogHorizon"]) == (90, "2m")

    for change, where in (
        (lambda s: s.update(tolerancePercent=101), "tolerancePercent"),
        (lambda s: s["behavior"].update(scaleDown={"selectPolicy": "Max"}), "selectPolicy"),
        (lambda s: s["behavior"].update(scaleDown={"period": "10 minutes"}), "period"),
        (
            lambda s: s["behavior"]["scaleUp"].update(panicPolicy={"panicThresholdPercent": 100}),
            "panicThresholdPercent",
        ),
        (lambda s: s["metrics"][0].update(targetValue="lots"), "targetValue"),
        (lambda s: s["homogeneousTarget"].update(maxReplicas=0), "maxReplicas"),
        (lambda s: s.update(minReplicas=1), "minReplicas"),
        (lambda s: s.update(capacityUtilizationPercent=0), "capacityUtilizationPercent"),
        (lambda s: s.update(backlogHorizon="2 min"), "backlogHorizon"),
    ):
        broken = copy.deepcopy(written)
        change(broken["spec"])
        code, answer = dry(control_plane, base, broken)
        assert code in (400, 422) and where in str(answer), (where, code, answer)


def test_every_history_field_is_kept_by_the_status_subresource(control_plane: ControlPlane) -> None:
    # Nothing the core keeps between passes may be pruned by the CRD's schema.
    install_crds(control_plane.client(), PHALANX_CRDS)
    ns = control_plane.new_namespace("asph")
    base = f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{ns}/autoscalingpolicies"
    obj = ours(MANIFESTS["waiting-on-pods"])
    obj["metadata"]["namespace"] = ns
    code, created = control_plane.http("POST", base, body=obj)
    assert code == 201, created
    history = History(**SAMPLES)
    decision = Decision(desired=3, current=2, ready=2, mode="Panic", reason="queue", history=history)
    written = status_from_decision(decision).to_dict()
    created["status"] = {"homogeneousStatus": written}
    name = created["metadata"]["name"]
    code, stored = control_plane.http("PUT", f"{base}/{name}/status?fieldValidation=Strict", body=created)
    assert code == 200, stored
    assert stored["status"]["homogeneousStatus"] == written
    read = TargetScalingStatus.model_validate(stored["status"]["homogeneousStatus"], strict=True)
    assert history_from_status(read) == history
