"""The exact objects a ModelServing becomes: names, labels, env, Services and gang objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phalanx.api import ModelServing, load_text, parse_resource
from phalanx.controller.desired import (
    client_service,
    gang_object,
    status_label_selector,
    steady_state,
)
from phalanx.controller.revision import group_revision, role_revision
from tests.conftest import EXAMPLES

Spec = dict[str, Any]


def seed() -> ModelServing:
    (ms,) = load_text((EXAMPLES / "llama-multinode.yaml").read_text()).resources
    assert isinstance(ms, ModelServing)
    return ms


def model(data: Spec) -> ModelServing:
    ms, problems = parse_resource(data)
    assert isinstance(ms, ModelServing), [p.render() for p in problems]
    return ms


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from>") for e in pod["spec"]["containers"][0]["env"]}


def test_seed_pods_are_named_like_kthena() -> None:
    pods = of_kind(steady_state(seed()), "Pod")
    assert [p["metadata"]["name"] for p in pods] == [
        "llama-multinode-0-405b-0-0",
        "llama-multinode-0-405b-0-1",
        "llama-multinode-0-405b-1-0",
        "llama-multinode-0-405b-1-1",
    ]


def test_seed_pod_labels_and_annotations() -> None:
    ms = seed()
    worker = of_kind(steady_state(ms), "Pod")[3]
    revision = group_revision(ms)
    role_hash = role_revision(ms, ms.spec.template.roles[0])
    assert worker["metadata"]["labels"] == {
        "modelserving.volcano.sh/name": "llama-multinode",
        "modelserving.volcano.sh/group-name": "llama-multinode-0",
        "modelserving.volcano.sh/role": "405b",
        "modelserving.volcano.sh/role-id": "405b-1",
        "modelserving.volcano.sh/revision": revision,
        "modelserving.volcano.sh/role-template-hash": role_hash,
        "leaderworkerset.sigs.k8s.io/name": "llama-multinode",
        "leaderworkerset.sigs.k8s.io/group-index": "0",
        # sha1("default/llama-multinode-0-405b-1-0"), the entry pod: LeaderWorkerSet's group key.
        "leaderworkerset.sigs.k8s.io/group-key": "350839c640386dfe3903289b5edcf03ea06e8bfd",
        "leaderworkerset.sigs.k8s.io/worker-index": "1",
        "serving.phalanx.dev/name": "llama-multinode",
        "serving.phalanx.dev/group-index": "0",
        "serving.phalanx.dev/role": "405b",
        "serving.phalanx.dev/role-index": "1",
        "serving.phalanx.dev/pod-index": "1",
        "serving.phalanx.dev/entry": "false",
        "serving.phalanx.dev/revision": revision,
        "serving.phalanx.dev/role-revision": role_hash,
    }
    assert worker["metadata"]["annotations"] == {
        "leaderworkerset.sigs.k8s.io/size": "2",
        "leaderworkerset.sigs.k8s.io/leader-name": "llama-multinode-0-405b-1-0",
        "scheduling.k8s.io/group-name": "llama-multinode-0",
        "volcano.sh/task-spec": "405b",
    }
    assert worker["spec"]["schedulerName"] == "volcano"


def test_seed_env_is_injected_first_and_keeps_user_env() -> None:
    pods = of_kind(steady_state(seed()), "Pod")
    entry, worker = pods[2], pods[3]
    assert env_of(worker) == {
        "ENTRY_ADDRESS": "llama-multinode-0-405b-1-0.default",
        "WORKER_INDEX": "1",
        "GROUP_SIZE": "2",
        "GROUP_INDEX": "0",
        "ROLE_NAME": "405b",
        "ROLE_INDEX": "1",
        "MODEL_SERVING_NAME": "llama-multinode",
        "LWS_LEADER_ADDRESS": "llama-multinode-0-405b-1.llama-multinode-0-405b.default",
        "LWS_GROUP_SIZE": "2",
        "LWS_WORKER_INDEX": "1",
        "HUGGING_FACE_HUB_TOKEN": "<from>",
    }
    assert env_of(entry)["WORKER_INDEX"] == "0"
    assert env_of(entry)["ENTRY_ADDRESS"] == "llama-multinode-0-405b-1-0.default"
    # The template's own containers are untouched otherwise.
    assert worker["spec"]["containers"][0]["command"][-1].startswith("bash /vllm-workspace")


def test_seed_headless_services_one_per_role_and_per_role_instance() -> None:
    services = of_kind(steady_state(seed()), "Service")
    headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [
        "llama-multinode-0-405b",  # the subdomain of every pod of role 405b in group 0
        "llama-multinode-0-405b-0-0",
        "llama-multinode-0-405b-1-0",
    ]
    role = {
        "serving.phalanx.dev/name": "llama-multinode",
        "serving.phalanx.dev/group-index": "0",
        "serving.phalanx.dev/role": "405b",
    }
    instance = {**role, "serving.phalanx.dev/role-index": "1", "serving.phalanx.dev/entry": "true"}
    for service, selector in ((headless[0], role), (headless[2], instance)):
        assert service["spec"] == {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
        }
    assert headless[2]["metadata"]["labels"]["modelserving.volcano.sh/role-id"] == "405b-1"


def test_seed_client_service_selects_entry_pods_on_the_declared_port() -> None:
    assert client_service(seed())["spec"] == {
        "selector": {"serving.phalanx.dev/name": "llama-multinode", "serving.phalanx.dev/entry": "true"},
        "type": "ClusterIP",
        "ports": [{"name": "tcp-8080", "port": 8080, "targetPort": 8080}],
    }


def test_seed_volcano_podgroup() -> None:
    podgroup = gang_object(seed(), 0)
    assert podgroup is not None
    assert podgroup["apiVersion"] == "scheduling.volcano.sh/v1beta1"
    assert podgroup["metadata"]["name"] == "llama-multinode-0"
    spec = podgroup["spec"]
    # minRoleReplicas {405b: 1}: one role instance of 1 entry + 1 worker must start together.
    assert spec["minMember"] == 2
    # Requests default from limits: 2 pods x (8 GPUs, 1124Gi memory, 800Gi disk, 125 CPUs).
    assert spec["minResources"] == {
        "cpu": "250",
        "ephemeral-storage": "1600Gi",
        "memory": "2248Gi",
        "nvidia.com/gpu": "16",
    }
    assert spec["subGroupPolicy"] == [
        {
            "name": "405b",
            "subGroupSize": 2,
            "minSubGroups": 1,
            "labelSelector": {
                "matchLabels": {
                    "serving.phalanx.dev/name": "llama-multinode",
                    "serving.phalanx.dev/role": "405b",
                }
            },
            "matchLabelKeys": ["serving.phalanx.dev/role-index"],
        }
    ]
    assert "networkTopology" not in spec


def test_gang_defaults_to_every_role_instance(serving: Callable[[], Spec]) -> None:
    podgroup = gang_object(model(serving()), 1)
    assert podgroup is not None
    assert podgroup["metadata"]["name"] == "demo-1"
    assert podgroup["spec"]["minMember"] == 4  # 2 role instances x (entry + 1 worker)
    assert podgroup["spec"]["minResources"] == {"nvidia.com/gpu": "32"}


def test_network_topology_and_queue_reach_the_podgroup(serving: Callable[[], Spec]) -> None:
    data = serving()
    data["metadata"]["annotations"] = {"scheduling.volcano.sh/queue-name": "inference"}
    data["spec"]["template"]["networkTopology"] = {
        "groupPolicy": {"mode": "hard", "highestTierAllowed": 2},
        "rolePolicy": {"mode": "hard", "highestTierAllowed": 1},
    }
    podgroup = gang_object(model(data), 0)
    assert podgroup is not None
    assert podgroup["spec"]["queue"] == "inference"
    assert podgroup["spec"]["networkTopology"] == {"mode": "hard", "highestTierAllowed": 2}
    assert podgroup["spec"]["subGroupPolicy"][0]["networkTopology"] == {
        "mode": "hard",
        "highestTierAllowed": 1,
    }


def test_coscheduling_podgroup_and_pod_label(serving: Callable[[], Spec]) -> None:
    data = serving()
    data["spec"]["schedulerName"] = "scheduler-plugins-scheduler"
    ms = model(data)
    objects = steady_state(ms)
    podgroup = of_kind(objects, "PodGroup")[0]
    assert podgroup["apiVersion"] == "scheduling.x-k8s.io/v1alpha1"
    assert podgroup["spec"] == {
        "minMember": 4,
        "minResources": {"nvidia.com/gpu": "32"},
        "scheduleTimeoutSeconds": 600,
    }
    pod = of_kind(objects, "Pod")[0]
    assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "demo-0"
    assert set(pod["metadata"]["annotations"]) == {"leaderworkerset.sigs.k8s.io/size"}  # no Volcano ones
    assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"


@pytest.mark.parametrize("annotation", ["none", "coscheduling"])
def test_gang_scheduler_annotation_wins(serving: Callable[[], Spec], annotation: str) -> None:
    data = serving()
    data["metadata"]["annotations"] = {"serving.phalanx.dev/gang-scheduler": annotation}
    ms = model(data)
    assert ms.gang_scheduler == annotation
    podgroups = of_kind(steady_state(ms), "PodGroup")
    assert len(podgroups) == (0 if annotation == "none" else 2)


def test_default_scheduler_has_no_gang_object(serving: Callable[[], Spec]) -> None:
    data = serving()
    data["spec"]["schedulerName"] = "default-scheduler"
    objects = steady_state(model(data))
    assert of_kind(objects, "PodGroup") == []
    for pod in of_kind(objects, "Pod"):
        assert not {"scheduling.k8s.io/group-name", "volcano.sh/task-spec"} & set(
            pod["metadata"]["annotations"]
        )


def test_object_counts_and_order(serving: Callable[[], Spec]) -> None:
    objects = steady_state(model(serving()))
    # client Service, then per group: PodGroup, the role's subdomain Service, then per role
    # instance: Service + 2 pods.
    group = ["PodGroup", "Service"] + ["Service", "Pod", "Pod"] * 2
    assert [o["kind"] for o in objects] == ["Service"] + group * 2


def test_owner_reference_when_the_object_has_a_uid(serving: Callable[[], Spec]) -> None:
    data = serving()
    assert "ownerReferences" not in steady_state(model(data))[1]["metadata"]
    data["metadata"]["uid"] = "1234"
    for obj in steady_state(model(data)):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "serving.phalanx.dev/v1alpha1",
                "kind": "ModelServing",
                "name": "demo",
                "uid": "1234",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_init_containers_get_the_env_too(serving: Callable[[], Spec]) -> None:
    data = serving()
    data["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["initContainers"] = [
        {"name": "fetch", "image": "busybox", "env": [{"name": "WORKER_INDEX", "value": "9"}]}
    ]
    pod = of_kind(steady_state(model(data)), "Pod")[0]
    init_env = {e["name"]: e["value"] for e in pod["spec"]["initContainers"][0]["env"]}
    assert init_env["WORKER_INDEX"] == "0"  # the injected value replaces the user's
    assert next(iter(init_env)) == "ENTRY_ADDRESS"


def test_status_label_selector_matches_one_pod_per_group(serving: Callable[[], Spec]) -> None:
    ms = model(serving())
    selector = dict(part.split("=") for part in status_label_selector(ms).split(","))
    matching = [
        p
        for p in of_kind(steady_state(ms), "Pod")
        if all(p["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    assert [p["metadata"]["name"] for p in matching] == ["demo-0-decode-0-0", "demo-1-decode-0-0"]


def test_service_without_declared_ports_is_headless(serving: Callable[[], Spec]) -> None:
    data = serving()
    del data["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["ports"]
    assert client_service(model(data))["spec"]["clusterIP"] == "None"
