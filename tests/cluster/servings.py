"""Small ModelServings and status readers shared by the operator's cluster tests."""

from __future__ import annotations

from typing import Any

from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from phalanx.api import labels as L
from phalanx.kube.resources import ModelServingResource
from tests.cluster.controlplane import ControlPlane


def small_serving(
    namespace: str,
    name: str,
    pool: str,
    *,
    replicas: int,
    role_replicas: int = 1,
    gpus: int = 4,
    image: str = "engine:v1",
    scheduler: str | None = None,
    recovery: str | None = None,
    rolling: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`replicas` groups of `role_replicas` instances of one role, each an entry and one worker pod
    needing `gpus` GPUs apiece, on the nodes of `pool`."""

    def template(container: str) -> dict[str, Any]:
        return {
            "spec": {
                "nodeSelector": {"phalanx.dev/pool": pool},
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {
                        "name": container,
                        "image": image,
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    }
                ],
            }
        }

    spec: dict[str, Any] = {
        "replicas": replicas,
        "template": {
            "roles": [
                {
                    "name": "engine",
                    "replicas": role_replicas,
                    "workerReplicas": 1,
                    "entryTemplate": template("entry"),
                    "workerTemplate": template("worker"),
                }
            ]
        },
    }
    if scheduler is not None:
        spec["schedulerName"] = scheduler
    if recovery is not None:
        spec["recoveryPolicy"] = recovery
    if rolling is not None:
        spec["rolloutStrategy"] = {"type": "ServingGroupRollingUpdate", "rollingUpdateConfiguration": rolling}
    return {
        "apiVersion": L.GROUP_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def status_of(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    ms = cp.client().get(ModelServingResource, name, namespace=namespace)
    status: dict[str, Any] = ms.to_dict().get("status") or {}
    return status


def conditions_of(cp: ControlPlane, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status_of(cp, namespace, name).get("conditions") or []}


def pods_of(cp: ControlPlane, namespace: str) -> dict[str, Pod]:
    """Pods not being deleted, by name."""
    return {
        p.metadata.name: p
        for p in cp.client().list(Pod, namespace=namespace)
        if p.metadata is not None and p.metadata.name and not p.metadata.deletionTimestamp
    }


def images_by_group(cp: ControlPlane, namespace: str) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for pod in pods_of(cp, namespace).values():
        assert pod.metadata is not None and pod.metadata.labels is not None and pod.spec is not None
        group = int(pod.metadata.labels[L.GROUP_INDEX])
        found.setdefault(group, set()).update(c.image or "" for c in pod.spec.containers)
    return found


def pool_nodes(cp: ControlPlane, namespace: str, count: int, gpus: int = 4) -> str:
    """`count` fake GPU nodes labelled with a pool only this namespace's pods select."""
    pool = f"pool-{namespace}"
    for index in range(count):
        cp.add_gpu_node(f"{namespace}-n{index}", gpus=gpus, labels={"phalanx.dev/pool": pool})
    return pool


def uids(cp: ControlPlane, namespace: str) -> dict[str, str]:
    return {name: pod.metadata.uid or "" for name, pod in pods_of(cp, namespace).items() if pod.metadata}


def merge_patch(cp: ControlPlane, namespace: str, name: str, patch: dict[str, Any]) -> None:
    cp.client().patch(ModelServingResource, name, patch, namespace=namespace, patch_type=PatchType.MERGE)


MODEL = "tiny-test"  # the model name the simulator engines of sim_serving serve


def sim_serving(namespace: str, name: str, pool: str, replicas: int) -> dict[str, Any]:
    """`replicas` groups of one entry and one worker `phalanx sim`, as examples/quickstart.yaml runs them."""

    def template(probes: bool) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": "engine",
            "image": "phalanx:test",
            "command": ["phalanx", "sim"],
            "args": ["--served-model-name", MODEL, "--port", "8000", "--join-port", "8001"],
            "ports": [{"name": "http", "containerPort": 8000}, {"name": "join", "containerPort": 8001}],
        }
        if probes:
            container["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1}
        return {
            "spec": {
                "nodeSelector": {"phalanx.dev/pool": pool},
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 5,
                "containers": [container],
            }
        }

    return {
        "apiVersion": L.GROUP_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "recoveryPolicy": "RoleRecreate",
            "template": {
                "roles": [
                    {
                        "name": "sim",
                        "replicas": 1,
                        "workerReplicas": 1,
                        "entryTemplate": template(probes=True),
                        "workerTemplate": template(probes=False),
                    }
                ]
            },
        },
    }


def available(cp: ControlPlane, namespace: str, name: str, replicas: int) -> bool:
    status = status_of(cp, namespace, name)
    ready = conditions_of(cp, namespace, name).get("Available", {}).get("status") == "True"
    return ready and status.get("availableReplicas") == replicas
