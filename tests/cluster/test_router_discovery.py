"""`phalanx router` on the real control plane: its endpoint set follows entry pods and ModelServings.

KWOK's pod addresses are not reachable, so these tests watch discovery itself through the router's
read-only `GET /debug/endpoints`, with the router as a child process (own process group, always
stopped) holding only the RBAC that docs/router.md lists.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from phalanx.api import labels as L
from phalanx.controller.observed import DRAINING_ANNOTATION
from phalanx.kube.resources import ModelServingResource
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process
from tests.cluster.routers import endpoints, eventually, routable_in, router_process

pytestmark = pytest.mark.cluster


# -- objects ---------------------------------------------------------------------------------------


def serving(
    namespace: str, name: str, *, replicas: int = 0, pool: str = "", model: str = ""
) -> dict[str, Any]:
    """A one-role ModelServing: entry + one worker per group, on the nodes of `pool`."""

    def template(container: str) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": container,
                    "image": "engine:v1",
                    "command": ["vllm", "serve"],
                    "args": ["org/model", "--served-model-name", model or name, "--port", "8000"],
                    "ports": [{"name": "http", "containerPort": 8000}],
                }
            ],
        }
        if pool:
            spec["nodeSelector"] = {"phalanx.dev/pool": pool}
        return {"spec": spec}

    return {
        "apiVersion": L.GROUP_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "template": {
                "roles": [
                    {
                        "name": "engine",
                        "workerReplicas": 1,
                        "entryTemplate": template("entry"),
                        "workerTemplate": template("worker"),
                    }
                ]
            },
        },
    }


def pod(
    namespace: str,
    name: str,
    node: str,
    *,
    owner: dict[str, Any] | None,
    serving_name: str,
    entry: bool = True,
    command: list[str],
) -> dict[str, Any]:
    """A pod as the operator labels it, bound to a KWOK node (which makes it Running and Ready)."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {L.NAME: serving_name, L.GROUP_INDEX: "0", L.ENTRY: "true" if entry else "false"},
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": L.GROUP_VERSION, "kind": "ModelServing", "name": owner["metadata"]["name"],
             "uid": owner["metadata"]["uid"], "controller": True},
        ]  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "engine",
                    "image": "engine:v1",
                    "command": command,
                    "ports": [{"name": "http", "containerPort": 8000}],
                }
            ],
        },
    }


def router_kubeconfig(cp: ControlPlane, namespace: str, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount holding only the router's documented rules, in `namespace`."""
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [L.API_GROUP], "resources": ["modelservings"], "verbs": ["list", "watch"]},
    ]
    meta = {"name": "phalanx-router", "namespace": namespace}
    client = cp.client()
    client.create(from_dict({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}))
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules}
    client.create(from_dict(role))
    client.create(
        from_dict(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "phalanx-router",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "phalanx-router", "namespace": namespace}],
            }
        )
    )
    return cp.service_account_kubeconfig(namespace, "phalanx-router", path)[0]


# -- tests -----------------------------------------------------------------------------------------


def test_the_endpoint_set_follows_entry_pods_of_model_servings(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    client = cp.client()
    install_crds(client, PHALANX_CRDS)
    namespace = cp.new_namespace("route")
    elsewhere = cp.new_namespace("other")
    node = f"{namespace}-n0"
    cp.add_gpu_node(node)
    kubeconfig = router_kubeconfig(cp, namespace, tmp_path / "router.kubeconfig")
    demo = client.create(ModelServingResource.from_dict(serving(namespace, "demo"))).to_dict()
    vllm = ["vllm", "serve", "org/model", "--served-model-name", "demo-model", "alias", "--port", "8000"]
    shell = ["sh", "-c", "set -eu\nexec vllm serve org/model --served-model-name shell-model --port 8000"]

    with router_process(kubeconfig, [namespace], tmp_path) as (process, url):
        assert endpoints(url) == {}
        for manifest in (
            pod(namespace, "demo-0-engine-0-0", node, owner=demo, serving_name="demo", command=vllm),
            pod(
                namespace,
                "demo-0-engine-0-1",
                node,
                owner=demo,
                serving_name="demo",
                command=vllm,
                entry=False,
            ),
            pod(namespace, "demo-1-engine-0-0", node, owner=demo, serving_name="demo", command=shell),
            pod(namespace, "ghost-0-engine-0-0", node, owner=None, serving_name="ghost", command=vllm),
            pod(elsewhere, "demo-0-engine-0-0", node, owner=None, serving_name="demo", command=vllm),
        ):
            client.create(from_dict(manifest))
        first, second = f"{namespace}/demo-0-engine-0-0", f"{namespace}/demo-1-engine-0-0"

        # Ready entry pods of an existing ModelServing, with the models their arguments name; never a
        # worker, a pod without a ModelServing, or a namespace not watched.
        seen = eventually("both entry pods routable", url, lambda eps: routable_in(eps) == {first, second})
        assert set(seen) == {first, second}
        assert seen[first]["models"] == ["demo-model", "alias"]
        assert seen[second]["models"] == ["shell-model"]
        assert seen[first]["url"].startswith("http://") and seen[first]["url"].endswith(":8000")
        assert (seen[first]["serving"], seen[first]["group_index"]) == ("demo", 0)

        # Marked draining by the operator: no new requests, still listed.
        mark = {"metadata": {"annotations": {DRAINING_ANNOTATION: "2026-01-01T00:00:00Z"}}}
        client.patch(Pod, "demo-1-engine-0-0", mark, namespace=namespace, patch_type=PatchType.MERGE)
        seen = eventually("the draining pod not routable", url, lambda eps: not eps[second]["routable"])
        assert seen[second]["draining"] and seen[first]["routable"]

        # A failed entry pod stops being routable.
        cp.fail_pod("demo-0-engine-0-0", namespace)
        seen = eventually("the failed pod not routable", url, lambda eps: not eps[first]["routable"])
        assert not seen[first]["ready"]

        # A deleted pod leaves the set.
        cp.remove_pod("demo-1-engine-0-0", namespace)
        eventually("the deleted pod gone", url, lambda eps: second not in eps)

        # A pod ready again comes back (KWOK readies a fresh pod).
        cp.remove_pod("demo-0-engine-0-0", namespace)
        eventually("the failed pod gone", url, lambda eps: first not in eps)
        again = pod(namespace, "demo-0-engine-0-0", node, owner=demo, serving_name="demo", command=vllm)
        client.create(from_dict(again))
        eventually("the new pod routable", url, lambda eps: set(eps) == {first} and eps[first]["routable"])

        # The ModelServing deleted: its pods are routed to no more, even before they are collected.
        client.delete(ModelServingResource, "demo", namespace=namespace)
        eventually("nothing left", url, lambda eps: eps == {})

        # SIGTERM: the router drains and exits cleanly.
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0


def test_an_operator_managed_model_serving_reaches_the_router(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The real path: ModelServing -> `phalanx operator` -> pods -> `phalanx router` (all namespaces)."""
    cp = control_plane
    client = cp.client()
    install_crds(client, PHALANX_CRDS)
    namespace = cp.new_namespace("e2e")
    pool = f"pool-{namespace}"
    for index in range(2):
        cp.add_gpu_node(f"{namespace}-n{index}", labels={"phalanx.dev/pool": pool})
    manifest = serving(namespace, "chat", replicas=2, pool=pool, model="chat-model")
    client.create(ModelServingResource.from_dict(manifest))
    names = {f"{namespace}/chat-{g}-engine-0-0" for g in range(2)}

    with router_process(cp.kubeconfig, [], tmp_path) as (_, url), operator_process(cp, namespace, tmp_path):
        seen = eventually("both groups routable", url, lambda eps: names <= routable_in(eps), timeout=120)
        assert {seen[n]["models"][0] for n in names} == {"chat-model"}
        assert not any(name.endswith("-1") for name in seen if name.startswith(f"{namespace}/"))  # no workers

        scale = {"spec": {"replicas": 1}}
        client.patch(ModelServingResource, "chat", scale, namespace=namespace, patch_type=PatchType.MERGE)
        eventually(
            "the scaled-down group gone",
            url,
            lambda eps: (
                {n for n in eps if n.startswith(f"{namespace}/")} == {f"{namespace}/chat-0-engine-0-0"}
            ),
            timeout=120,
        )
