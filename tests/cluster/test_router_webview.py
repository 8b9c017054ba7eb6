"""The router's web view on the real control plane: servings and entry pods from its discovery, and
Events only once RBAC allows them (the page degrades instead of failing without the grant)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from lightkube.codecs import from_dict
from lightkube.resources.rbac_authorization_v1 import Role

from phalanx.api import labels as L
from phalanx.kube.resources import ModelServingResource
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, wait_for
from tests.cluster.routers import router_process
from tests.cluster.test_router_discovery import pod, router_kubeconfig, serving

pytestmark = pytest.mark.cluster


def state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/ui/state", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


def test_the_web_view_shows_discovered_groups_and_events_once_allowed(
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
    entry["metadata"]["labels"].update({L.ROLE: "engine", L.ROLE_INDEX: "0"})  # as the operator labels it
    client.create(from_dict(entry))
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
        assert view["eventsReadable"] is False and view["timeline"] == []  # 403: degraded, not broken

        rules = client.get(Role, "phalanx-router", namespace=namespace).to_dict()["rules"]
        rules.append({"apiGroups": [""], "resources": ["events"], "verbs": ["list"]})
        client.patch(Role, "phalanx-router", {"rules": rules}, namespace=namespace)
        wait_for("the events once allowed", lambda: state(url)["eventsReadable"], 30)
        (row,) = state(url)["timeline"]
        assert (row["lane"], row["object"], row["reason"]) == ("scaling", "modelserving/demo", "ScaledUp")
