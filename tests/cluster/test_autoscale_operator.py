"""The operator's autoscaler on the real control plane: a policy (observeOnly false, a 1 s period)
on a ModelServing at zero groups starts the first group for a request the router holds, the
request is answered, the policy's status says what it decided and why, and a second policy on the
same ModelServing is refused with a condition naming the first. Real engines on process nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.kube.resources import AutoscalingPolicyResource, ModelServingResource, as_dict
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.procpods import ProcessKubelet, process_kubelet
from tests.cluster.routers import router_process
from tests.cluster.servings import MODEL, sim_serving
from tests.cluster.test_router_zero import demand
from tests.component.router.held import ChatInBackground

pytestmark = pytest.mark.cluster


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


def policy(namespace: str, name: str, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "AutoscalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "period": "1s",
            "metrics": [{"name": "num_requests_waiting", "targetValue": 4}],
            "homogeneousTarget": {
                "minReplicas": 0,
                "maxReplicas": 2,
                "target": {"targetRef": {"kind": "ModelServing", "name": target}},
            },
        },
    }


def status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    found = as_dict(cp.client().get(AutoscalingPolicyResource, name, namespace=namespace))
    return found.get("status") or {}


def condition(cp: ControlPlane, namespace: str, name: str, type_: str) -> dict[str, Any]:
    return next((c for c in status(cp, namespace, name).get("conditions") or [] if c["type"] == type_), {})


def test_a_policy_starts_the_first_group_for_a_held_request_and_a_second_policy_is_refused(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("autoscale")
    manifest = sim_serving(namespace, "chat", kubelet.pool(namespace, 1), replicas=0)
    cp.client().create(ModelServingResource.from_dict(manifest))
    with router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url):
        metrics = ("--router-metrics-url", f"{url}/metrics")
        with operator_process(cp, namespace, tmp_path, extra_args=metrics):
            wait_for("the model declared", lambda: demand(url).get("declared") is True, timeout=30)
            cp.client().create(AutoscalingPolicyResource.from_dict(policy(namespace, "chat-a", "chat")))
            wait_for(
                "a decision at zero",
                lambda: condition(cp, namespace, "chat-a", "Ready").get("status") == "True",
                timeout=30,
            )
            assert status(cp, namespace, "chat-a")["homogeneousStatus"]["desiredReplicas"] == 0
            chat = ChatInBackground(f"{url}/v1", MODEL, timeout_s=120)
            assert chat.answer()  # held until the group the policy started was ready
            stored = as_dict(cp.client().get(ModelServingResource, "chat", namespace=namespace))
            assert stored["spec"]["replicas"] == 1
            scaled = status(cp, namespace, "chat-a")["homogeneousStatus"]
            assert scaled["desiredReplicas"] == 1
            assert scaled["reason"]
            assert scaled["history"][-1]["previous"] == 0

            cp.client().create(AutoscalingPolicyResource.from_dict(policy(namespace, "chat-b", "chat")))
            wait_for(
                "the second policy refused",
                lambda: condition(cp, namespace, "chat-b", "ConflictingAutoscaler").get("status") == "True",
                timeout=30,
            )
            refused = condition(cp, namespace, "chat-b", "ConflictingAutoscaler")
            assert "chat-a" in refused["message"]
            assert status(cp, namespace, "chat-a")["homogeneousStatus"]["desiredReplicas"] == 1
