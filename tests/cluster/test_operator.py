"""`phalanx operator` on the real control plane: the seed manifest becomes gang-scheduled pods, a status."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.resources.core_v1 import Pod, Service

from phalanx.api import labels as L
from phalanx.runtimes.kubernetes.resources import ModelServingResource, VolcanoPodGroup
from tests.cluster.controlplane import ControlPlane, install_crds, operator_process, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "deploy" / "crds"


def seed_manifest(namespace: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "llama-multinode.yaml").read_text())
    data["metadata"]["namespace"] = namespace
    return data


def test_the_seed_manifest_becomes_an_available_gang_scheduled_group(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    client = control_plane.client()
    install_crds(client, CRDS)
    namespace = control_plane.new_namespace("seed")
    for index in range(4):  # the manifest's pods each ask for 8 GPUs, 125 CPUs and 1124Gi
        control_plane.add_gpu_node(f"{namespace}-n{index}", gpus=8, cpu="128", memory="1200Gi")
    manifest = seed_manifest(namespace)
    client.create(ModelServingResource.from_dict(manifest))
    with operator_process(control_plane, namespace, tmp_path):

        def available() -> bool:
            ms = client.get(ModelServingResource, "llama-multinode", namespace=namespace)
            status = ms.to_dict().get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return conditions.get("Available") == "True" and status.get("availableReplicas") == 1

        def explain() -> str:
            status = status_of(control_plane, namespace, "llama-multinode")
            pods = [
                (p.metadata.name if p.metadata else "", p.spec.nodeName if p.spec else "")
                for p in client.list(Pod, namespace=namespace)
            ]
            return f"groups {status.get('groups')}; pods {pods}"

        try:
            wait_for("llama-multinode Available", available, timeout=120)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {explain()}") from None

    pods = {p.metadata.name: p for p in client.list(Pod, namespace=namespace)}
    assert sorted(pods) == [
        "llama-multinode-0-405b-0-0",
        "llama-multinode-0-405b-0-1",
        "llama-multinode-0-405b-1-0",
        "llama-multinode-0-405b-1-1",
    ]
    entry = pods["llama-multinode-0-405b-0-0"]
    assert entry.metadata is not None and entry.metadata.labels is not None
    assert entry.metadata.labels[L.ENTRY] == "true"
    assert entry.metadata.annotations is not None
    assert entry.metadata.annotations[L.VOLCANO_GROUP_ANNOTATION] == "llama-multinode-0"
    assert entry.spec is not None and entry.spec.schedulerName == "volcano"
    env = {e.name: e.value for e in entry.spec.containers[0].env or []}
    assert env["ENTRY_ADDRESS"] == f"llama-multinode-0-405b-0-0.{namespace}"
    assert env["GROUP_SIZE"] == "2"
    services = {s.metadata.name for s in client.list(Service, namespace=namespace)}
    assert {"llama-multinode-0-405b-0-0", "llama-multinode-0-405b-1-0", "llama-multinode"} <= services
    gang = client.get(VolcanoPodGroup, "llama-multinode-0", namespace=namespace).to_dict()
    assert gang["spec"]["minMember"] == 2  # minRoleReplicas 405b: 1 x (entry + worker)
    assert {p["name"] for p in gang["spec"]["subGroupPolicy"]} == {"405b"}


def small_serving(namespace: str, name: str, pool: str, *, replicas: int, gpus: int = 4) -> dict[str, Any]:
    """A ModelServing of `replicas` groups, each an entry and one worker needing `gpus` GPUs apiece."""

    def template(container: str) -> dict[str, Any]:
        return {
            "spec": {
                "nodeSelector": {"phalanx.dev/pool": pool},
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": container,
                        "image": "engine:v1",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    }
                ],
            }
        }

    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
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


def status_of(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    ms = cp.client().get(ModelServingResource, name, namespace=namespace)
    status: dict[str, Any] = ms.to_dict().get("status") or {}
    return status


def test_the_api_server_rejects_an_invalid_spec_with_our_message(control_plane: ControlPlane) -> None:
    client = control_plane.client()
    install_crds(client, CRDS)
    namespace = control_plane.new_namespace("cel")
    broken = small_serving(namespace, "broken", "none", replicas=1)
    del broken["spec"]["template"]["roles"][0]["workerTemplate"]
    status, body = control_plane.http(
        "POST", f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{namespace}/modelservings", body=broken
    )
    assert status == 422
    assert "is required when workerReplicas is 1" in body["message"]


def test_volcano_starts_a_whole_group_or_none_of_it(control_plane: ControlPlane, tmp_path: Path) -> None:
    client = control_plane.client()
    install_crds(client, CRDS)
    namespace = control_plane.new_namespace("gang")
    pool = f"pool-{namespace}"
    # Room for one group (2 pods x 4 GPUs) plus half of another: 3 nodes of 4 GPUs.
    for index in range(3):
        control_plane.add_gpu_node(f"{namespace}-n{index}", gpus=4, labels={"phalanx.dev/pool": pool})
    client.create(ModelServingResource.from_dict(small_serving(namespace, "gang", pool, replicas=2)))
    with operator_process(control_plane, namespace, tmp_path):

        def one_ready_one_pending() -> bool:
            groups = status_of(control_plane, namespace, "gang").get("groups") or []
            return sorted(g["phase"] for g in groups) == ["Pending", "Ready"]

        wait_for("one group ready and one pending", one_ready_one_pending, timeout=90)
        time.sleep(5)  # several Volcano cycles: the pending group must stay wholly unbound
        pods = list(client.list(Pod, namespace=namespace))
        bound: dict[str, int] = {}
        for pod in pods:
            assert pod.metadata is not None and pod.metadata.labels is not None and pod.spec is not None
            group = pod.metadata.labels[L.GROUP_INDEX]
            bound[group] = bound.get(group, 0) + (1 if pod.spec.nodeName else 0)
        assert sorted(bound.values()) == [0, 2]  # never half a group


def test_scaling_through_the_scale_subresource(control_plane: ControlPlane, tmp_path: Path) -> None:
    client = control_plane.client()
    install_crds(client, CRDS)
    namespace = control_plane.new_namespace("scale")
    pool = f"pool-{namespace}"
    for index in range(4):
        control_plane.add_gpu_node(f"{namespace}-n{index}", gpus=4, labels={"phalanx.dev/pool": pool})
    client.create(ModelServingResource.from_dict(small_serving(namespace, "scaled", pool, replicas=1)))
    with operator_process(control_plane, namespace, tmp_path):
        wait_for(
            "1 group available",
            lambda: status_of(control_plane, namespace, "scaled").get("availableReplicas") == 1,
            timeout=90,
        )
        path = f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{namespace}/modelservings/scaled/scale"
        code, scale = control_plane.http("GET", path)
        assert code == 200 and scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1
        scale["spec"]["replicas"] = 2
        code, _ = control_plane.http("PUT", path, body=scale)
        assert code == 200
        wait_for(
            "2 groups available",
            lambda: status_of(control_plane, namespace, "scaled").get("availableReplicas") == 2,
            timeout=90,
        )
        names = sorted(p.metadata.name for p in client.list(Pod, namespace=namespace) if p.metadata)
        assert names == [
            "scaled-0-engine-0-0",
            "scaled-0-engine-0-1",
            "scaled-1-engine-0-0",
            "scaled-1-engine-0-1",
        ]


def test_a_failed_worker_recreates_its_role_instance(control_plane: ControlPlane, tmp_path: Path) -> None:
    client = control_plane.client()
    install_crds(client, CRDS)
    namespace = control_plane.new_namespace("heal")
    pool = f"pool-{namespace}"
    for index in range(2):
        control_plane.add_gpu_node(f"{namespace}-n{index}", gpus=4, labels={"phalanx.dev/pool": pool})
    client.create(ModelServingResource.from_dict(small_serving(namespace, "heal", pool, replicas=1)))
    with operator_process(control_plane, namespace, tmp_path):
        wait_for(
            "the group available",
            lambda: status_of(control_plane, namespace, "heal").get("availableReplicas") == 1,
            timeout=90,
        )
        before = {
            p.metadata.name: p.metadata.uid for p in client.list(Pod, namespace=namespace) if p.metadata
        }
        control_plane.fail_pod("heal-0-engine-0-1", namespace)

        def recreated() -> bool:
            pods = {
                p.metadata.name: p.metadata.uid for p in client.list(Pod, namespace=namespace) if p.metadata
            }
            status = status_of(control_plane, namespace, "heal")
            return (
                set(pods) == set(before)
                and all(pods[name] != before[name] for name in before)  # both pods of the instance are new
                and status.get("availableReplicas") == 1
            )

        wait_for("the role instance recreated and available again", recreated, timeout=90)
        groups = status_of(control_plane, namespace, "heal")["groups"]
        assert groups[0]["failures"] == 1
