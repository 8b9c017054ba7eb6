"""`phalanx operator` on the real control plane: the seed manifest becomes gang-scheduled pods, a status."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Event as CoreEvent
from lightkube.resources.core_v1 import Pod, Service
from lightkube.types import PatchType

from phalanx.api import labels as L
from phalanx.controller.observed import DRAINING_ANNOTATION, parse_time
from phalanx.kube.resources import (
    CoschedulingPodGroup,
    ModelDeploymentResource,
    ModelServingResource,
    VolcanoPodGroup,
)
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.servings import (
    conditions_of,
    merge_patch,
    pods_of,
    pool_nodes,
    small_serving,
    status_of,
    uids,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def seed_manifest(namespace: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "llama-multinode.yaml").read_text())
    data["metadata"]["namespace"] = namespace
    return data


def test_the_seed_manifest_becomes_an_available_gang_scheduled_group(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
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

        # What `kubectl get modelservings` prints: the server renders the CRD's printer columns.
        code, table = control_plane.http(
            "GET",
            f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{namespace}/modelservings",
            accept="application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        assert code == 200 and table["kind"] == "Table"
        shown = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
        assert shown == ["Name", "Ready", "Available", "Updated", "Age"]
        [row] = table["rows"]
        cells = dict(zip([c["name"] for c in table["columnDefinitions"]], row["cells"], strict=True))
        assert {k: cells[k] for k in ("Name", "Ready", "Available", "Updated", "Replicas")} == {
            "Name": "llama-multinode",
            "Ready": 1,
            "Available": "True",
            "Updated": 1,
            "Replicas": 1,
        }

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


def test_the_api_server_rejects_an_invalid_spec_with_our_message(control_plane: ControlPlane) -> None:
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
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
    install_crds(client, PHALANX_CRDS)
    namespace = control_plane.new_namespace("gang")
    # Room for one group (2 pods x 4 GPUs) plus half of another: 3 nodes of 4 GPUs.
    pool = pool_nodes(control_plane, namespace, 3, gpus=4)
    client.create(ModelServingResource.from_dict(small_serving(namespace, "gang", pool, replicas=2)))
    with operator_process(control_plane, namespace, tmp_path):

        def one_ready_one_pending() -> bool:
            groups = status_of(control_plane, namespace, "gang").get("groups") or []
            return sorted(g["phase"] for g in groups) == ["Pending", "Ready"]

        wait_for("one group ready and one pending", one_ready_one_pending, timeout=90)
        time.sleep(5)  # several Volcano cycles: the pending group must stay wholly unbound
        # never half a group
        assert sorted(bound_pods_by_group(control_plane, namespace).values()) == [0, 2]


def test_scaling_through_the_scale_subresource(control_plane: ControlPlane, tmp_path: Path) -> None:
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
    namespace = control_plane.new_namespace("scale")
    pool = pool_nodes(control_plane, namespace, 4, gpus=4)
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

        # Back to 1. KWOK's pod IPs lead nowhere, so group 1's in-flight count is unknown: its
        # drain must wait the bound (the pods' terminationGracePeriodSeconds, 5 s), not end early.
        code, scale = control_plane.http("GET", path)
        scale["spec"]["replicas"] = 1
        code, _ = control_plane.http("PUT", path, body=scale)
        assert code == 200

        def group_1_message() -> str:
            groups = status_of(control_plane, namespace, "scaled").get("groups") or []
            return next((str(g.get("message", "")) for g in groups if g.get("index") == 1), "")

        wait_for("group 1 draining, count unknown", lambda: "unknown at 1 entry pod" in group_1_message(), 30)
        entry = client.get(Pod, "scaled-1-engine-0-0", namespace=namespace)
        assert entry.metadata is not None and entry.metadata.annotations is not None
        since = parse_time(entry.metadata.annotations[DRAINING_ANNOTATION])
        assert since is not None

        def entry_going() -> bool:
            try:
                pod = client.get(Pod, "scaled-1-engine-0-0", namespace=namespace)
            except ApiError as exc:
                return exc.status.code == 404
            return pod.metadata is not None and pod.metadata.deletionTimestamp is not None

        wait_for("group 1 deleted after its drain bound", entry_going, timeout=30)
        assert time.time() - since >= 5.0 - 0.5  # the annotation's clock is the operator's


def test_a_failed_worker_recreates_its_role_instance(control_plane: ControlPlane, tmp_path: Path) -> None:
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
    namespace = control_plane.new_namespace("heal")
    pool = pool_nodes(control_plane, namespace, 2, gpus=4)
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


def bound_pods_by_group(cp: ControlPlane, namespace: str) -> dict[str, int]:
    bound: dict[str, int] = {}
    for pod in cp.client().list(Pod, namespace=namespace):
        assert pod.metadata is not None and pod.metadata.labels is not None and pod.spec is not None
        group = pod.metadata.labels[L.GROUP_INDEX]
        bound[group] = bound.get(group, 0) + (1 if pod.spec.nodeName else 0)
    return bound


def test_the_default_scheduler_places_groups_partly_which_gang_scheduling_prevents(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The contrast to the Volcano test: same nodes, same spec, kube-scheduler binds pod by pod."""
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
    namespace = control_plane.new_namespace("nogang")
    pool = pool_nodes(control_plane, namespace, 3)  # room for 3 of the 4 pods
    spec = small_serving(namespace, "nogang", pool, replicas=2, scheduler="default-scheduler")
    client.create(ModelServingResource.from_dict(spec))
    with operator_process(control_plane, namespace, tmp_path):
        wait_for(
            "3 pods bound",
            lambda: sum(bound_pods_by_group(control_plane, namespace).values()) == 3,
            timeout=90,
        )
        time.sleep(3)
        # Both groups hold GPUs and neither can serve: the deadlock gang scheduling exists to prevent.
        assert sorted(bound_pods_by_group(control_plane, namespace).values()) == [1, 2]
        gang = conditions_of(control_plane, namespace, "nogang")["GangScheduled"]
        assert (gang["status"], gang["reason"]) == ("False", "NoGangScheduler")
        assert not list(client.list(VolcanoPodGroup, namespace=namespace))


ANY_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
# Just enough of the coscheduling plugin's CRD for its API to be served.
COSCHEDULING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "podgroups.scheduling.x-k8s.io"},
    "spec": {
        "group": "scheduling.x-k8s.io",
        "scope": "Namespaced",
        "names": {
            "kind": "PodGroup",
            "plural": "podgroups",
            "singular": "podgroup",
            "listKind": "PodGroupList",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
                "subresources": {"status": {}},
            }
        ],
    },
}


def test_a_gang_crd_installed_while_the_operator_runs_gives_running_groups_their_podgroups(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
    namespace = control_plane.new_namespace("crd")
    pool = pool_nodes(control_plane, namespace, 1)
    spec = small_serving(namespace, "cosched", pool, replicas=1)
    spec["metadata"]["annotations"] = {L.GANG_SCHEDULER_ANNOTATION: "coscheduling"}
    client.create(ModelServingResource.from_dict(spec))
    crd_dir = tmp_path / "crd"
    crd_dir.mkdir()
    (crd_dir / "podgroups.yaml").write_text(yaml.safe_dump(COSCHEDULING_CRD))
    try:
        with operator_process(control_plane, namespace, tmp_path):

            def not_served() -> bool:
                gang = conditions_of(control_plane, namespace, "cosched").get("GangScheduled") or {}
                return gang.get("reason") == "PodGroupNotServed"

            wait_for("GangScheduled False: PodGroupNotServed", not_served, timeout=60)
            assert len(pods_of(control_plane, namespace)) == 2  # plain pods meanwhile
            before = uids(control_plane, namespace)
            install_crds(client, crd_dir)

            def enforced() -> bool:
                gang = conditions_of(control_plane, namespace, "cosched")["GangScheduled"]
                groups = list(client.list(CoschedulingPodGroup, namespace=namespace))
                return gang["status"] == "True" and len(groups) == 1

            wait_for("the PodGroup created once its API is served", enforced, timeout=60)
            podgroup = client.get(CoschedulingPodGroup, "cosched-0", namespace=namespace).to_dict()
            assert podgroup["spec"]["minMember"] == 2
            assert uids(control_plane, namespace) == before  # no pod restarted for it
    finally:
        with contextlib.suppress(ApiError):
            client.delete(CustomResourceDefinition, "podgroups.scheduling.x-k8s.io")


def test_a_spec_the_api_server_accepts_but_cannot_run_is_reported_in_status(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
    namespace = control_plane.new_namespace("invalid")
    pool = pool_nodes(control_plane, namespace, 1, gpus=8)
    spec = small_serving(namespace, "bad", pool, replicas=1)
    worker = spec["spec"]["template"]["roles"][0]["workerTemplate"]["spec"]["containers"][0]
    worker["resources"] = {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "4"}}
    client.create(ModelServingResource.from_dict(spec))  # CEL cannot see inside pod templates
    with operator_process(control_plane, namespace, tmp_path) as process:

        def reported() -> dict[str, Any] | None:
            valid = conditions_of(control_plane, namespace, "bad").get("Valid")
            return valid if valid and valid["status"] == "False" else None

        valid = wait_for("Valid False in status", reported, timeout=60)
        assert valid["reason"] == "InvalidSpec"
        assert "spec.template.roles[0].workerTemplate.spec.containers[0].resources" in valid["message"]
        assert "fix:" in valid["message"]
        time.sleep(2)
        assert pods_of(control_plane, namespace) == {}  # nothing was started from it
        assert process.poll() is None  # and the operator did not crash
        events = [e for e in client.list(CoreEvent, namespace=namespace) if e.reason == "InvalidSpec"]
        assert events and events[0].type == "Warning"

        worker["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
        merge_patch(control_plane, namespace, "bad", {"spec": spec["spec"]})

        def fixed() -> bool:
            conditions = conditions_of(control_plane, namespace, "bad")
            return (
                "Valid" not in conditions
                and status_of(control_plane, namespace, "bad").get("availableReplicas") == 1
            )

        wait_for("the fixed spec runs", fixed, timeout=90)


def test_a_model_deployment_is_planned_into_an_owned_model_serving_and_planner_errors_show(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    client = control_plane.client()
    install_crds(client, PHALANX_CRDS)
    namespace = control_plane.new_namespace("md")
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "llama-3.3-70b-nc80adis.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    client.create(ModelDeploymentResource.from_dict(manifest))
    name = manifest["metadata"]["name"]

    def deployment() -> dict[str, Any]:
        data: dict[str, Any] = client.get(ModelDeploymentResource, name, namespace=namespace).to_dict()
        return data

    def planned(status: str) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            found = deployment().get("status") or {}
            condition = {c["type"]: c for c in found.get("conditions") or []}.get("Planned")
            return condition if condition and condition["status"] == status else None

        return check

    with operator_process(control_plane, namespace, tmp_path):
        condition = wait_for("Planned True", planned("True"), timeout=60)
        assert "data parallel" in condition["message"] and "tensor parallel" in condition["message"]
        status = deployment()["status"]
        assert status["modelServing"] == name and status["plan"]["tensor_parallel_size"] >= 1
        serving = client.get(ModelServingResource, name, namespace=namespace).to_dict()
        [owner] = serving["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelDeployment", name, True)
        assert owner["uid"] == deployment()["metadata"]["uid"]

        # An edit the planner cannot satisfy: its message, with the fix, lands in the condition.
        client.patch(
            ModelDeploymentResource,
            name,
            {"spec": {"model": "llama-3.1-405b-instruct", "maxNodes": 1}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        failed = wait_for("Planned False", planned("False"), timeout=60)
        assert failed["reason"] == "NoPlan"
        assert "does not fit on 1 node" in failed["message"] and "fix: allow up to" in failed["message"]
        # The ModelServing it owns is left running its last good plan.
        kept = client.get(ModelServingResource, name, namespace=namespace).to_dict()
        assert kept["spec"] == serving["spec"]
