"""The router's web view on the real control plane: servings and entry pods from its discovery,
worker pods, and Events and AutoscalingPolicies only once RBAC allows them (the page says what it
cannot read instead of failing without the grant)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from lightkube.codecs import from_dict
from lightkube.resources.rbac_authorization_v1 import Role
from lightkube.types import PatchType

from phalanx.api import labels as L
from phalanx.kube.resources import AutoscalingPolicyResource, ModelServingResource
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, wait_for
from tests.cluster.routers import router_process
from tests.cluster.test_router_discovery import pod, router_kubeconfig, serving

pytestmark = pytest.mark.cluster


def state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/ui/state", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def test_the_web_view_shows_groups_worker_pods_and_events_and_policies_once_allowed(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    client = cp.client()
    install_crds(client, PHALANX_CRDS)
    namespace = cp.new_namespace("webview")
    node = f"{namespace}-n0"
    cp.add_gpu_node(node)
    kubeconfig = router_kubeconfig(cp, namespace, tmp_path / "router.kubeconfig")  # no events rule
    demo = client.create(ModelServingResource.from_dict(serving(namespace, "demo", replicas=1))).to_dict()
    vllm = ["vllm", "serve", "org/model", "--served-model-name", "demo", "--port", "8000"]
    entry = pod(namespace, "demo-0-engine-0-0", node, owner=demo, serving_name="demo", command=vllm)
    labels = {L.ROLE: "engine", L.ROLE_INDEX: "0"}  # as the operator labels them
    entry["metadata"]["labels"].update({**labels, L.POD_INDEX: "0"})
    client.create(from_dict(entry))
    worker = pod(
        namespace, "demo-0-engine-0-1", node, owner=demo, serving_name="demo", entry=False, command=vllm
    )
    worker["metadata"]["labels"].update({**labels, L.POD_INDEX: "1"})
    client.create(from_dict(worker))
    policy = {
        "apiVersion": L.GROUP_VERSION,
        "kind": "AutoscalingPolicy",
        "metadata": {"name": "demo-scale", "namespace": namespace},
        "spec": {
            "metrics": [{"name": "num_requests_waiting", "targetValue": 4}],
            "homogeneousTarget": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "target": {"targetRef": {"kind": "ModelServing", "name": "demo"}},
            },
        },
    }
    client.create(AutoscalingPolicyResource.from_dict(policy))
    decided = {
        "desiredReplicas": 2,
        "currentReplicas": 1,
        "readyReplicas": 1,
        "reason": "waiting 9 > 4 per group",
    }
    client.patch(
        AutoscalingPolicyResource.Status,
        "demo-scale",
        {"status": {"homogeneousStatus": decided}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "demo.scaled", "namespace": namespace},
        "involvedObject": {"kind": "ModelServing", "name": "demo", "namespace": namespace},
        "reason": "ScaledUp",
        "message": "replicas 0 -> 1",
        "type": "Normal",
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }
    client.create(from_dict(event))

    with router_process(kubeconfig, [namespace], tmp_path) as (_, url):

        def shows_the_group() -> bool:
            view = state(url)
            groups = [g for ms in view["servings"] for g in ms["groups"]]
            pods = [p for g in groups for r in g["roles"] for p in r["pods"]]
            return any(p["name"] == "demo-0-engine-0-0" and p["ready"] and p["endpoint"] for p in pods)

        wait_for("the discovered group on the page", shows_the_group, 60)
        view = state(url)
        assert view["source"] == "kubernetes"
        assert (view["servings"][0]["name"], view["servings"][0]["desired"]) == ("demo", 1)
        # The worker pod needs no grant beyond the discovery's `list` on pods.
        (group,) = view["servings"][0]["groups"]
        (role,) = group["roles"]
        assert [(p["name"], p["entry"], p["endpoint"] is None) for p in role["pods"]] == [
            ("demo-0-engine-0-0", True, False),
            ("demo-0-engine-0-1", False, True),
        ]
        # 403 on events and policies: said on the page, the rest shown.
        assert view["unreadable"] == [
            "autoscalingpolicies (needs list on autoscalingpolicies)",
            "events (needs list on events)",
        ]
        assert view["eventsReadable"] is False and view["timeline"] == [] and view["policies"] == []

        rules = client.get(Role, "phalanx-router", namespace=namespace).to_dict()["rules"]
        rules.append({"apiGroups": [""], "resources": ["events"], "verbs": ["list"]})
        rules.append({"apiGroups": [L.API_GROUP], "resources": ["autoscalingpolicies"], "verbs": ["list"]})
        client.patch(Role, "phalanx-router", {"rules": rules}, namespace=namespace)
        wait_for("the events and policies once allowed", lambda: state(url)["unreadable"] == [], 30)
        view = state(url)
        (row,) = view["timeline"]
        assert (row["lane"], row["object"], row["reason"]) == ("scaling", "modelserving/demo", "ScaledUp")
        (row,) = view["policies"]
        assert (row["name"], row["target"], row["desired"], row["current"], row["ready"]) == (
            "demo-scale",
            "demo",
            2,
            1,
            1,
        )
        assert row["reason"] == "waiting 9 > 4 per group"
