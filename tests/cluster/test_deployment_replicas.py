"""Who owns the count of a ModelDeployment's ModelServing, on the real control plane: the operator's
forced server-side apply sends the deployment's `spec.replicas` while nothing autoscales the
ModelServing, and keeps the count an autoscaler set (HPA's write through the scale subresource, or
an AutoscalingPolicy's merge patch) when the deployment changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.types import PatchType

from phalanx.api import labels as L
from phalanx.kube.resources import (
    AutoscalingPolicyResource,
    ModelDeploymentResource,
    ModelServingResource,
    as_dict,
)
from tests.cluster.controlplane import (
    PHALANX_CRDS,
    ROOT,
    ControlPlane,
    install_crds,
    operator_process,
    wait_for,
)
from tests.cluster.test_autoscale_operator import policy

pytestmark = pytest.mark.cluster


def deployment(namespace: str, name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart-deployment.yaml").read_text())
    manifest["metadata"] = {"name": name, "namespace": namespace}
    manifest["spec"]["replicas"] = 1
    return manifest


def created(cp: ControlPlane) -> str:
    """A namespace holding ModelDeployment `tiny` at 1 group; its name."""
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("mdowner")
    cp.client().create(ModelDeploymentResource.from_dict(deployment(namespace, "tiny")))
    return namespace


def change(cp: ControlPlane, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cp.client().patch(
        ModelDeploymentResource, name, {"spec": spec}, namespace=namespace, patch_type=PatchType.MERGE
    )


def serving(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return as_dict(cp.client().get(ModelServingResource, name, namespace=namespace))


def settles(cp: ControlPlane, namespace: str, name: str, seed: str, replicas: int) -> None:
    """The deployment's change (its engine arguments) reached the ModelServing, with `replicas`."""

    def check() -> bool:
        spec = serving(cp, namespace, name)["spec"]
        return f'"--seed", "{seed}"' in json.dumps(spec) and (spec["replicas"] == replicas)

    wait_for(f"--seed {seed} applied at {replicas} group(s)", check, timeout=60)


def test_a_count_set_through_the_scale_subresource_survives_a_changed_deployment(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = created(cp)
    with operator_process(cp, namespace, tmp_path):
        wait_for("the ModelServing at 1", lambda: serving(cp, namespace, "tiny")["spec"]["replicas"] == 1)
        # Nothing autoscales it: the deployment's count takes effect.
        change(cp, namespace, "tiny", {"replicas": 2, "engineArgs": ["--seed", "1"]})
        settles(cp, namespace, "tiny", "1", 2)
        # An HPA's write: an Update of the scale subresource, by its own field manager.
        cp.client().patch(
            ModelServingResource.Scale,
            "tiny",
            {"spec": {"replicas": 3}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager="horizontal-pod-autoscaler",
        )
        change(cp, namespace, "tiny", {"replicas": 1, "engineArgs": ["--seed", "2"]})
        settles(cp, namespace, "tiny", "2", 3)


def test_a_policys_count_survives_a_changed_deployment_and_is_never_dropped(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = created(cp)
    # observeOnly: the policy owns the count but writes nothing itself; its writes are played below.
    watching = policy(namespace, "tiny-load", "tiny", low=1, observe=True)
    cp.client().create(AutoscalingPolicyResource.from_dict(watching))
    with operator_process(cp, namespace, tmp_path):
        wait_for("the ModelServing at 1", lambda: serving(cp, namespace, "tiny")["spec"]["replicas"] == 1)
        # Only the operator's apply owns the count: it sends the stored one back, not the plan's,
        # and not nothing (the CRD's default would take the field's place).
        change(cp, namespace, "tiny", {"replicas": 2, "engineArgs": ["--seed", "1"]})
        settles(cp, namespace, "tiny", "1", 1)
        # The autoscaler's write: a merge patch of the ModelServing by the operator's client.
        cp.client().patch(
            ModelServingResource,
            "tiny",
            {"spec": {"replicas": 2}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
            field_manager=L.FIELD_MANAGER,
        )
        change(cp, namespace, "tiny", {"replicas": 1, "engineArgs": ["--seed", "2"]})
        settles(cp, namespace, "tiny", "2", 2)
        owners = [
            (e["manager"], e["operation"])
            for e in serving(cp, namespace, "tiny")["metadata"]["managedFields"]
            if "f:replicas" in (e.get("fieldsV1") or {}).get("f:spec", {})
        ]
        assert owners == [(L.FIELD_MANAGER, "Update")]  # the apply let go of the count
