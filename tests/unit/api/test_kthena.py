"""Kthena's ModelServings validate in Phalanx as written and as a Kthena cluster gives them back.

The manifests are ours, one per shape Kthena's repository shows (its examples, documentation, end-to-end
test data and webhook tests): single-pod roles, prefill/decode with workers, multi-node groups, gang and
network-topology policies, both rollout types, affinity, plugins, and the pod-spec features they use.
Each goes through `kthena.round_trip` (Kthena's CRD defaults, server metadata, a status) and, with only
its apiVersion changed, must get the same verdict as the manifest as written.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from phalanx.api import load_text
from phalanx.api.errors import FieldError
from phalanx.api.modelserving import ModelServing
from phalanx.api.yamlfile import dump_yaml
from tests.unit.api.kthena import (
    KTHENA_API_VERSION,
    apply_kthena_defaults,
    as_phalanx,
    round_trip,
)

Manifest = dict[str, Any]


def _container(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **extra}


ENGINE = _container(
    "engine",
    "vllm/vllm-openai:v0.11.1",
    command=["python3", "-m", "vllm.entrypoints.openai.api_server"],
    args=["--model", "/models/qwen", "--port", "8000", "--tensor-parallel-size", "8"],
    ports=[{"containerPort": 8000, "name": "http"}],
    env=[
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ],
    readinessProbe={
        "httpGet": {"path": "/health", "port": 8000},
        "initialDelaySeconds": 30,
        "periodSeconds": 5,
    },
    livenessProbe={"httpGet": {"path": "/health", "port": 8000}, "failureThreshold": 30, "periodSeconds": 10},
    resources={"limits": {"nvidia.com/gpu": 8, "memory": "200Gi"}, "requests": {"nvidia.com/gpu": 8}},
    volumeMounts=[
        {"name": "models", "mountPath": "/models", "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
    ],
    imagePullPolicy="IfNotPresent",
)
VOLUMES = [
    {"name": "models", "hostPath": {"path": "/data/models", "type": "Directory"}},
    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
]


def _pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "spec": {
            "containers": [copy.deepcopy(c) for c in containers],
            "volumes": copy.deepcopy(VOLUMES),
            **spec,
        }
    }


def _serving(name: str, roles: list[dict[str, Any]], **spec: Any) -> Manifest:
    return {
        "apiVersion": KTHENA_API_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"schedulerName": "volcano", "replicas": 1, **spec, "template": {"roles": roles}},
    }


def _template(serving: Manifest, **fields: Any) -> Manifest:
    serving["spec"]["template"].update(fields)
    return serving


SHAPES: dict[str, Manifest] = {
    # One pod per role instance, no workers (the most common example).
    "single pod": _serving(
        "qwen-single",
        [{"name": "engine", "replicas": 1, "workerReplicas": 0, "entryTemplate": _pod(ENGINE)}],
    ),
    # Prefill and decode roles, each an entry and workers, gang-scheduled as one group.
    "prefill/decode with workers": _template(
        _serving(
            "pd-disagg",
            [
                {
                    "name": "prefill",
                    "replicas": 2,
                    "workerReplicas": 1,
                    "entryTemplate": _pod(ENGINE),
                    "workerTemplate": _pod(ENGINE),
                },
                {
                    "name": "decode",
                    "replicas": 1,
                    "workerReplicas": 1,
                    "entryTemplate": _pod(ENGINE),
                    "workerTemplate": _pod(ENGINE),
                },
            ],
            recoveryPolicy="ServingGroupRecreate",
            rolloutStrategy={
                "type": "ServingGroupRollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": 1},
            },
        ),
        gangPolicy={"minRoleReplicas": {"prefill": 1, "decode": 1}},
        restartGracePeriodSeconds=30,
    ),
    # One role across nodes: Ray head on the entry pod, workers joining it (role name starts with a digit).
    "multi-node": _serving(
        "llama-multinode",
        [
            {
                "name": "70b",
                "replicas": 1,
                "workerReplicas": 2,
                "entryTemplate": _pod(
                    _container("head", "vllm/vllm-openai:v0.11.1", command=["sh", "-c", "ray start --head"])
                ),
                "workerTemplate": _pod(
                    _container(
                        "worker",
                        "vllm/vllm-openai:v0.11.1",
                        command=["sh", "-c", "ray start --address=$(ENTRY_ADDRESS):6379"],
                    )
                ),
            }
        ],
        replicas=2,
    ),
    # Role-level rollout: each role with its own budget and partition.
    "role rolling update": _serving(
        "role-rolling",
        [
            {
                "name": "prefill",
                "replicas": 3,
                "workerReplicas": 0,
                "entryTemplate": _pod(ENGINE),
                "maxUnavailable": "50%",
                "partition": 1,
            },
            {
                "name": "decode",
                "replicas": 2,
                "workerReplicas": 0,
                "entryTemplate": _pod(ENGINE),
                "maxUnavailable": 1,
            },
        ],
        rolloutStrategy={"type": "RoleRollingUpdate"},
        recoveryPolicy="RoleRecreate",
    ),
    # Group rollout with a partition, in percent.
    "group rolling update with partition": _serving(
        "group-rolling",
        [{"name": "engine", "replicas": 1, "workerReplicas": 0, "entryTemplate": _pod(ENGINE)}],
        replicas=4,
        rolloutStrategy={"rollingUpdateConfiguration": {"maxUnavailable": "25%", "partition": "50%"}},
    ),
    # Volcano network topology for the group and for each role.
    "network topology": _template(
        _serving(
            "topology",
            [
                {
                    "name": "engine",
                    "replicas": 2,
                    "workerReplicas": 1,
                    "entryTemplate": _pod(ENGINE),
                    "workerTemplate": _pod(ENGINE),
                }
            ],
        ),
        networkTopology={
            "groupPolicy": {"mode": "hard", "highestTierAllowed": 2},
            "rolePolicy": {"highestTierName": "rack"},
        },
    ),
    # Pods of a group close together: preferred pod affinity by the group's own label, node affinity.
    "affinity": _serving(
        "affinity",
        [
            {
                "name": "engine",
                "replicas": 2,
                "workerReplicas": 0,
                "entryTemplate": _pod(
                    ENGINE,
                    affinity={
                        "podAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "podAffinityTerm": {
                                        "labelSelector": {
                                            "matchLabels": {"modelserving.volcano.sh/name": "affinity"}
                                        },
                                        "matchLabelKeys": ["modelserving.volcano.sh/group-name"],
                                        "topologyKey": "kubernetes.io/hostname",
                                    },
                                }
                            ]
                        },
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "nvidia.com/gpu.product", "operator": "Exists"}
                                        ]
                                    }
                                ]
                            }
                        },
                    },
                ),
            }
        ],
    ),
    # Everything else the examples use in a pod: init containers, env sources, probes of each kind,
    # lifecycle hooks, capabilities, host network, runtime class, tolerations, config-map volumes.
    "pod features": _serving(
        "pod-features",
        [
            {
                "name": "engine",
                "replicas": 1,
                "workerReplicas": 0,
                "entryTemplate": {
                    "metadata": {
                        "labels": {"app": "llm", "serving.volcano.sh/model-name": "qwen"},
                        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"},
                    },
                    "spec": {
                        "initContainers": [
                            _container(
                                "download",
                                "busybox:1.36",
                                args=["sh", "-c", "echo fetch"],
                                envFrom=[{"secretRef": {"name": "hf-token"}}],
                                volumeMounts=[{"name": "models", "mountPath": "/models"}],
                            )
                        ],
                        "containers": [
                            {
                                **copy.deepcopy(ENGINE),
                                "env": [
                                    {
                                        "name": "MODEL",
                                        "valueFrom": {
                                            "configMapKeyRef": {
                                                "name": "cfg",
                                                "key": "model",
                                                "optional": True,
                                            }
                                        },
                                    },
                                    {
                                        "name": "TOKEN",
                                        "valueFrom": {
                                            "secretKeyRef": {
                                                "name": "hf-token",
                                                "key": "token",
                                                "optional": False,
                                            }
                                        },
                                    },
                                ],
                                "readinessProbe": {
                                    "tcpSocket": {"port": 8000},
                                    "timeoutSeconds": 2,
                                    "successThreshold": 1,
                                },
                                "livenessProbe": {"exec": {"command": ["sh", "-c", "true"]}},
                                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 5"]}}},
                                "securityContext": {"capabilities": {"add": ["IPC_LOCK"]}},
                            }
                        ],
                        "volumes": [
                            *copy.deepcopy(VOLUMES),
                            {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
                        ],
                        "hostNetwork": True,
                        "runtimeClassName": "nvidia",
                        "terminationGracePeriodSeconds": 60,
                        "tolerations": [
                            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                        ],
                    },
                },
            }
        ],
    ),
    # Ascend NPUs instead of GPUs.
    "npu": _serving(
        "npu",
        [
            {
                "name": "engine",
                "replicas": 1,
                "workerReplicas": 0,
                "entryTemplate": _pod(
                    _container(
                        "engine",
                        "ascend/vllm:latest",
                        resources={
                            "limits": {"huawei.com/ascend-1980": 8},
                            "requests": {"huawei.com/ascend-1980": 8},
                        },
                    )
                ),
            }
        ],
    ),
    # A ModelServing that Kthena's LeaderWorkerSet support made: owned by the LWS, with its labels plugin.
    "from a LeaderWorkerSet": _serving(
        "lws-made",
        [
            {
                "name": "leader",
                "replicas": 1,
                "workerReplicas": 1,
                "entryTemplate": _pod(ENGINE),
                "workerTemplate": _pod(ENGINE),
            }
        ],
        plugins=[{"name": "lws-standard-labels"}],
    ),
}


def _validate(obj: Manifest) -> tuple[list[FieldError], list[FieldError]]:
    loaded = load_text(dump_yaml([obj]), "exported.yaml")
    return loaded.errors, loaded.warnings


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_a_kthena_manifest_validates_as_written(shape: str) -> None:
    errors, _ = _validate(as_phalanx(SHAPES[shape]))
    assert errors == [], [e.render() for e in errors]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_it_validates_the_same_after_a_round_trip_through_kthena(shape: str) -> None:
    errors, warnings = _validate(as_phalanx(round_trip(SHAPES[shape])))
    assert errors == [], [e.render() for e in errors]
    fields = {w.field for w in warnings}
    assert {"status", "metadata"} <= fields  # each says why it has no effect
    rolling_roles = SHAPES[shape]["spec"].get("rolloutStrategy", {}).get("type") == "RoleRollingUpdate"
    for index, _ in enumerate(SHAPES[shape]["spec"]["template"]["roles"]):
        # Kthena's CRD put maxUnavailable: 1 on every role; it does nothing unless roles roll one by one.
        assert (f"spec.template.roles[{index}].maxUnavailable" in fields) is not rolling_roles


def test_the_round_trip_is_what_kthena_stores() -> None:
    stored = round_trip(SHAPES["prefill/decode with workers"])
    spec = stored["spec"]
    assert (spec["recoveryPolicy"], spec["schedulerName"], spec["template"]["restartGracePeriodSeconds"]) == (
        "ServingGroupRecreate",
        "volcano",
        30,
    )
    assert [role["maxUnavailable"] for role in spec["template"]["roles"]] == [1, 1]
    port = spec["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["ports"][0]
    assert port["protocol"] == "TCP"
    assert stored["metadata"]["resourceVersion"] and stored["status"]["conditions"]


def test_defaults_fill_only_objects_that_exist_and_replace_nulls() -> None:
    manifest = _serving(
        "d", [{"name": "r", "workerReplicas": 0, "entryTemplate": _pod(ENGINE), "replicas": None}]
    )
    manifest["spec"]["plugins"] = [{"name": "p", "config": {"keep": None}}]
    stored = apply_kthena_defaults(manifest)
    assert "rolloutStrategy" not in stored["spec"]  # a default never creates its parent
    assert "networkTopology" not in stored["spec"]["template"]
    assert stored["spec"]["template"]["roles"][0]["replicas"] == 1  # null pruned, then defaulted
    assert stored["spec"]["plugins"] == [{"name": "p", "type": "BuiltIn", "config": {"keep": None}}]
    with_rollout = apply_kthena_defaults({"spec": {"rolloutStrategy": {"rollingUpdateConfiguration": {}}}})
    assert with_rollout["spec"]["rolloutStrategy"] == {
        "type": "ServingGroupRollingUpdate",
        "rollingUpdateConfiguration": {"maxUnavailable": 1},
    }


def test_the_exported_status_and_server_metadata_are_warnings_at_their_lines() -> None:
    loaded = load_text(dump_yaml([as_phalanx(round_trip(SHAPES["single pod"]))]), "exported.yaml")
    status = next(w for w in loaded.warnings if w.field == "status")
    metadata = next(w for w in loaded.warnings if w.field == "metadata")
    assert status.line and metadata.line
    assert "is ignored" in status.message
    assert "resourceVersion" in metadata.message and "resourceVersion" in metadata.fix
    (ms,) = loaded.resources
    assert ms.status is None  # what a file says of a status never reaches the controller


def test_plugins_other_than_lws_labels_are_errors_that_say_what_to_do_instead() -> None:
    manifest = as_phalanx(SHAPES["single pod"])
    manifest["spec"]["plugins"] = [
        {
            "name": "demo-pod-tweaks",
            "config": {"runtimeClassName": "nvidia", "env": [{"name": "A", "value": "1"}]},
        },
        {"name": "my-org-plugin", "scope": {"roles": ["engine"], "target": "Entry"}},
        {"name": "lws-standard-labels"},
    ]
    errors, warnings = _validate(manifest)
    assert [(e.field, e.value) for e in errors] == [
        ("spec.plugins[0].name", "demo-pod-tweaks"),
        ("spec.plugins[1].name", "my-org-plugin"),
    ]
    assert "runtimeClassName" in errors[0].fix and "entryTemplate/workerTemplate" in errors[1].fix
    assert [w.field for w in warnings] == ["spec.plugins[2].name"]


def test_a_rolling_update_configuration_under_role_rolling_update_is_ignored() -> None:
    manifest = as_phalanx(SHAPES["role rolling update"])
    manifest["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] = {"partition": 3, "maxSurge": 2}
    loaded = load_text(dump_yaml([manifest]))
    assert loaded.errors == []
    (ms,) = loaded.resources
    assert isinstance(ms, ModelServing)
    assert (ms.spec.rolling_update.partition, ms.spec.rolling_update.max_surge) == (0, 0)


@pytest.mark.parametrize(
    ("role_name", "valid"),
    [("405b", True), ("1role", True), ("a" * 13, True), ("Decode", False), ("de_code", False), ("-x", False)],
)
def test_role_names_are_dns_1123_labels_on_purpose(role_name: str, valid: bool) -> None:
    """Kthena's webhook wants DNS-1035 and its CRD at most 12 characters; Phalanx accepts Kthena's own
    multi-node example (`405b`) and longer names while the pod names fit (docs/api.md says why)."""
    manifest = as_phalanx(SHAPES["single pod"])
    manifest["spec"]["template"]["roles"][0]["name"] = role_name
    errors, _ = _validate(manifest)
    assert (errors == []) is valid, [e.render() for e in errors]
