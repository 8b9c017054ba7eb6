"""HPA and KEDA beside ours, on the real control plane: the manifests of docs/autoscaling.md ("With
KEDA or HPA instead"), read from the docs so the two cannot drift.

kube-controller-manager runs the real HPA controller: an HPA whose `minReplicas` is above the
ModelServing's count raises it through the scale subresource without reading any metric (no
metrics adapter runs here), and the operator starts the new group. KEDA's own ScaledObject CRD
(copied out of KEDA's Go module by `hack/control-plane/build.sh keda`) checks the ScaledObject in a
server-side dry run; its admission webhook and operator do not run here."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.codecs import from_dict
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler

from phalanx.kube.resources import ModelServingResource
from tests.cluster.controlplane import (
    BUILD_CMD,
    PHALANX_CRDS,
    ROOT,
    ControlPlane,
    install_crds,
    keda_scaledobject_crd,
    operator_process,
    wait_for,
)
from tests.cluster.servings import pods_of, pool_nodes, small_serving, status_of

pytestmark = pytest.mark.cluster

DOCS = ROOT / "docs" / "autoscaling.md"
SECTION = "## With KEDA or HPA instead"


def documented(kind: str) -> dict[str, Any]:
    """The one manifest of `kind` among the section's YAML blocks."""
    text = DOCS.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    blocks = re.findall(r"```yaml\n(.*?)```", text[start : end if end != -1 else None], re.DOTALL)
    (found,) = [doc for doc in map(yaml.safe_load, blocks) if doc and doc.get("kind") == kind]
    return dict(found)


def in_namespace(manifest: dict[str, Any], namespace: str) -> dict[str, Any]:
    placed = copy.deepcopy(manifest)
    placed["metadata"]["namespace"] = namespace
    return placed


def hpa_conditions(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    hpa = cp.client().get(HorizontalPodAutoscaler, name, namespace=namespace)
    conditions = (hpa.status.conditions if hpa.status else None) or []
    return {c.type: c for c in conditions}


def test_the_real_hpa_raises_a_model_serving_to_its_minimum_and_the_operator_starts_the_group(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    hpa = documented("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("serving.phalanx.dev/v1alpha1", "ModelServing")
    minimum = hpa["spec"]["minReplicas"]
    assert minimum == 2, "the test raises a ModelServing at 1 group to the documented minimum"
    namespace = cp.new_namespace("hpa")
    pool = pool_nodes(cp, namespace, 2 * minimum, gpus=4)  # a group: 2 pods of 4 GPUs, a node each
    cp.client().create(
        ModelServingResource.from_dict(small_serving(namespace, target["name"], pool, replicas=1))
    )
    with operator_process(cp, namespace, tmp_path):
        wait_for(
            "1 group available",
            lambda: status_of(cp, namespace, target["name"]).get("availableReplicas") == 1,
            timeout=90,
        )
        cp.client().create(from_dict(in_namespace(hpa, namespace)))
        # The HPA controller finds the CRD's scale subresource through discovery (reset every 30 s).
        wait_for(
            "the HPA raised spec.replicas",
            lambda: (
                cp.client()
                .get(ModelServingResource, target["name"], namespace=namespace)
                .to_dict()["spec"]["replicas"]
                == minimum
            ),
            timeout=120,
        )
        able = hpa_conditions(cp, namespace, hpa["metadata"]["name"])["AbleToScale"]
        assert able.status == "True", able
        assert able.reason in {"SucceededRescale", "ReadyForNewScale"}, able
        wait_for(
            f"{minimum} groups available",
            lambda: status_of(cp, namespace, target["name"]).get("availableReplicas") == minimum,
            timeout=90,
        )
        groups = {name.rsplit("-engine-", 1)[0] for name in pods_of(cp, namespace)}
        assert groups == {f"{target['name']}-{i}" for i in range(minimum)}
        stored = cp.client().get(HorizontalPodAutoscaler, hpa["metadata"]["name"], namespace=namespace)
        assert stored.status is not None and stored.status.desiredReplicas == minimum


def test_the_documented_scaled_object_passes_a_dry_run_against_kedas_own_crd(
    control_plane: ControlPlane,
) -> None:
    crd = keda_scaledobject_crd()
    if crd is None:
        pytest.skip(f"KEDA's ScaledObject CRD is not in the control-plane cache; run `{BUILD_CMD} keda`")
    cp = control_plane
    install_crds(cp.client(), crd.parent)
    scaled = documented("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("serving.phalanx.dev/v1alpha1", "ModelServing")
    namespace = cp.new_namespace("keda")
    path = f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects?dryRun=All&fieldValidation=Strict"
    code, answer = cp.http("POST", path, body=in_namespace(scaled, namespace))
    assert code == 201, answer
    assert answer["spec"]["triggers"] == scaled["spec"]["triggers"]
    # The same dry run refuses what the CRD does not allow, so the pass above is the CRD's word.
    wrong = in_namespace(scaled, namespace)
    wrong["spec"]["minReplicas"] = wrong["spec"].pop("minReplicaCount")
    code, answer = cp.http("POST", path, body=wrong)
    assert code == 400 and "minReplicas" in str(answer), answer
    wrong = in_namespace(scaled, namespace)
    wrong["spec"]["minReplicaCount"] = wrong["spec"]["maxReplicaCount"] + 1
    code, answer = cp.http("POST", path, body=wrong)
    assert code == 422 and "minReplicaCount must be less than or equal to maxReplicaCount" in str(answer), (
        answer
    )
