"""Smoke tests of the test control plane itself: RBAC, fake GPU nodes, KWOK, kube-scheduler, Volcano gang."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Pod, ServiceAccount, ServiceAccountToken

from tests.cluster.controlplane import ControlPlane, PodGroup, wait_for

pytestmark = pytest.mark.cluster

GANG_OBSERVE_SECONDS = 12.0  # how long "nothing of the group gets bound" is watched (24 Volcano cycles)


def pool_name() -> str:
    return f"pool-{uuid.uuid4().hex[:6]}"


def gpu_pod(
    name: str, namespace: str, pool: str, gpus: int, *, scheduler: str = "default-scheduler", group: str = ""
) -> dict[str, Any]:
    annotations = {"scheduling.k8s.io/group-name": group} if group else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "schedulerName": scheduler,
            "nodeSelector": {"phalanx.dev/pool": pool},
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "engine",
                    "image": "vllm/vllm-openai:v0.11.1",
                    "resources": {
                        "requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": str(gpus)},
                        "limits": {"nvidia.com/gpu": str(gpus)},
                    },
                }
            ],
        },
    }


def pod_running_ready(client: Client, name: str, namespace: str) -> bool:
    pod = client.get(Pod, name, namespace=namespace)
    if not pod.spec.nodeName or pod.status is None or pod.status.phase != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def add_pool(cp: ControlPlane, pool: str, count: int, gpus: int = 8) -> list[str]:
    names = [f"{pool}-gpu-{i}" for i in range(count)]
    for i, name in enumerate(names):
        cp.add_gpu_node(name, gpus=gpus, rack=f"rack-{i}", labels={"phalanx.dev/pool": pool})
    return names


def test_apiserver_enforces_rbac_for_service_account_tokens(control_plane: ControlPlane) -> None:
    cp = control_plane
    client = cp.client()
    ns = cp.new_namespace("rbac")
    client.create(ServiceAccount(metadata=ObjectMeta(name="nobody", namespace=ns)))
    token_request = client.create(
        ServiceAccountToken(metadata=ObjectMeta(), spec={"expirationSeconds": 600}), "nobody", namespace=ns
    )
    token = token_request.status.token

    status, body = cp.http("GET", f"/api/v1/namespaces/{ns}/secrets", token=token)
    assert status == 403, body
    # Authenticated as the service account (a signed, accepted token), then denied by RBAC.
    assert f"system:serviceaccount:{ns}:nobody" in body["message"]

    status, _ = cp.http("GET", "/api/v1/namespaces/kube-system/secrets")
    assert status == 200  # the admin identity (system:masters) is allowed
    status, _ = cp.http("GET", "/api/v1/namespaces/default/secrets", token="not-a-token")
    assert status == 401


def test_fake_gpu_nodes_become_ready(control_plane: ControlPlane) -> None:
    cp = control_plane
    pool = pool_name()
    names = add_pool(cp, pool, 2)
    client = cp.client()
    for name in names:
        node = client.get(Node, name)
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.metadata.labels["topology.kubernetes.io/zone"] == "zone-a"
        assert node.metadata.labels["topology.phalanx.dev/rack"].startswith("rack-")
        assert cp.node_ready(name)


def test_plain_pod_is_bound_and_made_running_then_fails_and_disappears(control_plane: ControlPlane) -> None:
    cp = control_plane
    client = cp.client()
    pool = pool_name()
    (node,) = add_pool(cp, pool, 1)
    ns = cp.new_namespace("plain")
    client.create(from_dict(gpu_pod("solo", ns, pool, 4)))

    wait_for("pod solo Running/Ready", lambda: pod_running_ready(client, "solo", ns), timeout=60)
    pod = client.get(Pod, "solo", namespace=ns)
    assert pod.spec.nodeName == node
    assert pod.status.podIP

    cp.fail_pod("solo", ns)
    time.sleep(1.0)  # give KWOK a chance to (wrongly) flip it back
    pod = client.get(Pod, "solo", namespace=ns)
    assert pod.status.phase == "Failed"
    assert not any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    client.create(from_dict(gpu_pod("victim", ns, pool, 4)))
    wait_for("pod victim Running/Ready", lambda: pod_running_ready(client, "victim", ns), timeout=60)
    cp.remove_pod("victim", ns)

    def gone() -> bool:
        try:
            client.get(Pod, "victim", namespace=ns)
        except ApiError as err:
            return err.status.code == 404
        return False

    wait_for("pod victim gone", gone, timeout=30)


def make_gang(client: Client, ns: str, pool: str, members: int, gpus: int) -> list[str]:
    client.create(
        PodGroup(
            metadata=ObjectMeta(name="gang", namespace=ns),
            spec={
                "minMember": members,
                "queue": "default",
                "minResources": {"nvidia.com/gpu": str(members * gpus)},
            },
        )
    )
    names = [f"gang-{i}" for i in range(members)]
    for name in names:
        client.create(from_dict(gpu_pod(name, ns, pool, gpus, scheduler="volcano", group="gang")))
    return names


def test_volcano_schedules_a_gang_together(control_plane: ControlPlane) -> None:
    cp = control_plane
    client = cp.client()
    pool = pool_name()
    nodes = add_pool(cp, pool, 2)
    ns = cp.new_namespace("gang")
    pods = make_gang(client, ns, pool, members=2, gpus=8)

    for name in pods:
        wait_for(
            f"pod {name} Running/Ready",
            lambda n=name: pod_running_ready(client, n, ns),
            timeout=90,
        )
    placed = sorted(client.get(Pod, n, namespace=ns).spec.nodeName for n in pods)
    assert placed == sorted(nodes)  # 8 GPUs each: one pod per node
    wait_for(
        "PodGroup gang Running",
        lambda: client.get(PodGroup, "gang", namespace=ns).status.get("phase") == "Running",
        timeout=30,
    )


def test_volcano_binds_nothing_when_the_gang_does_not_fit(control_plane: ControlPlane) -> None:
    cp = control_plane
    client = cp.client()
    pool = pool_name()
    add_pool(cp, pool, 1)  # room for one 8-GPU pod; the gang needs two
    ns = cp.new_namespace("nogang")
    pods = make_gang(client, ns, pool, members=2, gpus=8)

    # Volcano must actually have looked at the gang (not merely be idle) and found it does not fit ...
    def unschedulable() -> bool:
        conds = client.get(PodGroup, "gang", namespace=ns).status.get("conditions") or []
        return any(c["type"] == "Unschedulable" and c["status"] == "True" for c in conds)

    wait_for("PodGroup gang Unschedulable", unschedulable, timeout=30)
    # ... and keeps every member unbound, cycle after cycle.
    deadline = time.monotonic() + GANG_OBSERVE_SECONDS
    while time.monotonic() < deadline:
        bound = [n for n in pods if client.get(Pod, n, namespace=ns).spec.nodeName]
        assert bound == [], f"gang partially bound: {bound}"
        time.sleep(0.5)
    pg = client.get(PodGroup, "gang", namespace=ns)
    assert pg.status.get("phase") in {"Pending", "Inqueue"}, pg.status


def test_volcano_accepts_and_schedules_a_sub_group_policy(control_plane: ControlPlane) -> None:
    """Volcano >= 1.14: ``subGroupPolicy`` survives the CRD schema and a 2 x 2 gang is bound together."""
    cp = control_plane
    client = cp.client()
    pool = pool_name()
    add_pool(cp, pool, 4)
    ns = cp.new_namespace("subgroup")
    policy = {
        "name": "replica",
        "subGroupSize": 2,
        "minSubGroups": 2,
        "matchLabelKeys": ["phalanx.dev/replica"],
    }
    client.create(
        PodGroup(
            metadata=ObjectMeta(name="gang", namespace=ns),
            spec={"minMember": 4, "queue": "default", "subGroupPolicy": [policy]},
        )
    )
    assert client.get(PodGroup, "gang", namespace=ns).spec["subGroupPolicy"] == [policy]  # not pruned
    names = []
    for replica in ("r0", "r1"):
        for i in range(2):
            pod = gpu_pod(f"{replica}-{i}", ns, pool, 8, scheduler="volcano", group="gang")
            pod["metadata"]["labels"] = {"phalanx.dev/replica": replica}
            client.create(from_dict(pod))
            names.append(f"{replica}-{i}")

    for name in names:
        wait_for(f"pod {name} Running/Ready", lambda n=name: pod_running_ready(client, n, ns), timeout=90)
    assert len({client.get(Pod, n, namespace=ns).spec.nodeName for n in names}) == 4
