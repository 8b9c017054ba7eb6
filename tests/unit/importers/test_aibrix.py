"""AIBrix RayClusterFleet / RayClusterReplicaSet and KubeRay RayCluster manifests imported.

One Ray cluster becomes one ServingGroup: the head is the entry pod, the worker group the workers. The
expected pods below are written out by hand from KubeRay v1.2.1's pod construction (`ray start` flags,
env, volumes, init container, probes), so a change in the importer shows up as a difference in data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from phalanx.api import labels as L
from phalanx.controller.desired import steady_state
from phalanx.importers import InputError
from phalanx.runtimes.local.env import expand
from tests.unit.importers.helpers import (
    gang_min_member,
    group_pods,
    imported,
    notes_text,
    only_resource,
    phalanx_import,
    serving,
)

FLEET = """
apiVersion: orchestration.aibrix.ai/v1alpha1
kind: RayClusterFleet
metadata:
  name: llama-70b
  namespace: serving
  labels:
    model.aibrix.ai/name: llama-70b
spec:
  replicas: 2
  selector:
    matchLabels:
      model.aibrix.ai/name: llama-70b
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {model.aibrix.ai/name: llama-70b}
      annotations: {ray.io/overwrite-container-cmd: "true"}
    spec:
      rayVersion: "2.40.0"
      headGroupSpec:
        rayStartParams: {dashboard-host: "0.0.0.0", block: "false"}
        template:
          metadata:
            labels: {model.aibrix.ai/name: llama-70b, model.aibrix.ai/port: "8000"}
          spec:
            containers:
            - name: head
              image: vllm/vllm-openai:v0.9.0
              command: [/bin/bash, -lc, --]
              args: ["$KUBERAY_GEN_RAY_START_CMD; vllm serve meta-llama/Llama-3.1-70B --served-model-name
                llama-70b --tensor-parallel-size 8 --pipeline-parallel-size 2
                --distributed-executor-backend ray"]
              ports:
              - {containerPort: 6379, name: gcs}
              - {containerPort: 8000, name: service}
              resources:
                limits: {cpu: "16", memory: 200Gi, nvidia.com/gpu: 8}
                requests: {cpu: "16", memory: 200Gi, nvidia.com/gpu: 8}
      workerGroupSpecs:
      - groupName: gpu-workers
        replicas: 1
        minReplicas: 1
        maxReplicas: 1
        rayStartParams: {}
        template:
          metadata:
            labels: {model.aibrix.ai/name: llama-70b}
          spec:
            containers:
            - name: worker
              image: vllm/vllm-openai:v0.9.0
              command: [/bin/bash, -lc, --]
              args: ["$KUBERAY_GEN_RAY_START_CMD"]
              env: [{name: NCCL_SOCKET_IFNAME, value: eth0}]
              resources:
                limits: {cpu: "16", memory: 200Gi, nvidia.com/gpu: 8}
"""

# What KubeRay (as AIBrix installs it) generates for FLEET: block 'false' is kept on the head; the
# worker joins the head, which is $(ENTRY_ADDRESS) in a Phalanx role instance.
FLEET_HEAD_START = (
    "ray start --head  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  "
    "--memory=214748364800  --metrics-export-port=8080  --num-cpus=16  --num-gpus=8 "
)
FLEET_WORKER_START = (
    "ray start  --address=$(ENTRY_ADDRESS):6379  --block  --dashboard-agent-listen-port=52365  "
    "--memory=214748364800  --metrics-export-port=8080  --num-cpus=16  --num-gpus=8 "
)
CLUSTER_NAME = {"name": "RAY_CLUSTER_NAME", "value": "$(MODEL_SERVING_NAME)-$(GROUP_INDEX)"}
INSTANCE_ID = {"name": "RAY_CLOUD_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
IN_USE = {"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"}
TAGS = {"name": "RAY_USAGE_STATS_EXTRA_TAGS", "value": "kuberay_version=v1.2.1;kuberay_crd=RayCluster"}
NO_PASSWORD = {"name": "REDIS_PASSWORD", "value": ""}
DISK_USAGE = {"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "1"}
HEAD_AT = [
    {"name": "FQ_RAY_IP", "value": "$(ENTRY_ADDRESS)"},
    {"name": "RAY_IP", "value": "$(ENTRY_ADDRESS)"},
]

FLEET_HEAD_ENV = [
    CLUSTER_NAME,
    INSTANCE_ID,
    {"name": "RAY_NODE_TYPE_NAME", "value": "headgroup"},
    {"name": "KUBERAY_GEN_RAY_START_CMD", "value": FLEET_HEAD_START},
    {"name": "RAY_PORT", "value": "6379"},
    {"name": "RAY_ADDRESS", "value": "127.0.0.1:6379"},
    IN_USE,
    TAGS,
    NO_PASSWORD,
    DISK_USAGE,
]
FLEET_WORKER_ENV = [
    {"name": "NCCL_SOCKET_IFNAME", "value": "eth0"},
    *HEAD_AT,
    CLUSTER_NAME,
    INSTANCE_ID,
    {"name": "RAY_NODE_TYPE_NAME", "value": "gpu-workers"},
    {"name": "KUBERAY_GEN_RAY_START_CMD", "value": FLEET_WORKER_START},
    {"name": "RAY_PORT", "value": "6379"},
    {"name": "RAY_ADDRESS", "value": "$(ENTRY_ADDRESS):6379"},
    IN_USE,
    NO_PASSWORD,
    DISK_USAGE,
]
SHARED_MEMORY = {"mountPath": "/dev/shm", "name": "shared-mem"}
METRICS_PORT = {"containerPort": 8080, "name": "metrics"}


def _own_env(container: dict[str, Any]) -> list[dict[str, Any]]:
    """A rendered container's env after the variables Phalanx injects first."""
    env = container["env"]
    assert [item["name"] for item in env[: len(L.INJECTED_ENV)]] == list(L.INJECTED_ENV)
    return list(env[len(L.INJECTED_ENV) :])


def _env_values(container: dict[str, Any]) -> dict[str, str]:
    """The container's env as the kubelet expands it (earlier variables only)."""
    values: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            values[item["name"]] = expand(item["value"], values)
    return values


def test_a_fleet_becomes_one_servinggroup_per_ray_cluster(tmp_path: Path) -> None:
    result = imported(FLEET)
    out = only_resource(result)
    spec = out["spec"]
    assert out["metadata"] == {
        "name": "llama-70b",
        "namespace": "serving",
        "labels": {"model.aibrix.ai/name": "llama-70b"},
    }
    assert (spec["replicas"], spec["schedulerName"], spec["recoveryPolicy"]) == (
        2,
        "default-scheduler",
        "None",
    )
    assert spec["rolloutStrategy"] == {
        "type": "ServingGroupRollingUpdate",
        "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (role,) = spec["template"]["roles"]
    assert (role["name"], role["replicas"], role["workerReplicas"]) == ("ray", 1, 1)
    run = phalanx_import(tmp_path, FLEET)
    assert run.returncode == 0, run.stderr  # imported, validated, nothing lost
    assert "selector dropped" in run.stdout and "rayVersion 2.40.0 dropped" in run.stdout
    written = tmp_path / "imported.yaml"
    written.write_text(run.stdout)
    validated = subprocess.run(
        [sys.executable, "-m", "phalanx", "validate", "-f", str(written)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_each_group_renders_one_head_and_the_workers_with_kuberays_labels() -> None:
    ms = serving(only_resource(imported(FLEET)))
    pods = [o for o in steady_state(ms) if o["kind"] == "Pod"]
    assert [p["metadata"]["name"] for p in pods] == [
        "llama-70b-0-ray-0-0",
        "llama-70b-0-ray-0-1",
        "llama-70b-1-ray-0-0",
        "llama-70b-1-ray-0-1",
    ]
    for group in (0, 1):
        head, worker = group_pods(ms, group)
        assert head["metadata"]["labels"][L.ENTRY] == "true"
        for pod, node_type, group_name in ((head, "head", "headgroup"), (worker, "worker", "gpu-workers")):
            labels = pod["metadata"]["labels"]
            assert labels["ray.io/is-ray-node"] == "yes"
            assert (labels["ray.io/node-type"], labels["ray.io/group"]) == (node_type, group_name)
            assert labels["model.aibrix.ai/name"] == "llama-70b"
            assert labels["orchestration.aibrix.ai/raycluster-fleet-name"] == "llama-70b"
            # KubeRay's ownership labels would make a KubeRay operator count the pods as its own.
            assert "ray.io/cluster" not in labels and "ray.io/identifier" not in labels
        assert head["metadata"]["labels"]["model.aibrix.ai/port"] == "8000"


def test_the_head_runs_the_users_command_with_kuberays_env() -> None:
    ms = serving(only_resource(imported(FLEET)))
    head = group_pods(ms, 1)[0]
    (container,) = head["spec"]["containers"]
    # ray.io/overwrite-container-cmd: the command is the user's, which runs $KUBERAY_GEN_RAY_START_CMD.
    assert container["command"] == ["/bin/bash", "-lc", "--"]
    assert container["args"][0].startswith("$KUBERAY_GEN_RAY_START_CMD; vllm serve")
    assert _own_env(container) == FLEET_HEAD_ENV
    # The router sends requests to the first port: the serving port goes first, metrics is added.
    assert container["ports"] == [
        {"containerPort": 8000, "name": "service"},
        {"containerPort": 6379, "name": "gcs"},
        METRICS_PORT,
    ]
    assert container["volumeMounts"] == [SHARED_MEMORY]
    assert head["spec"]["volumes"] == [
        {"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "200Gi"}}
    ]
    assert "readinessProbe" not in container and "livenessProbe" not in container  # AIBrix: no injection
    assert "initContainers" not in head["spec"]


def test_workers_join_the_head_of_their_own_group() -> None:
    ms = serving(only_resource(imported(FLEET)))
    head, worker = group_pods(ms, 1)
    (container,) = worker["spec"]["containers"]
    assert container["args"] == ["$KUBERAY_GEN_RAY_START_CMD"]
    assert _own_env(container) == FLEET_WORKER_ENV
    values = _env_values(container)
    head_dns = f"{head['metadata']['name']}.serving"
    assert values["KUBERAY_GEN_RAY_START_CMD"].startswith(f"ray start  --address={head_dns}:6379  --block ")
    assert (values["RAY_ADDRESS"], values["FQ_RAY_IP"]) == (f"{head_dns}:6379", head_dns)
    assert values["RAY_CLUSTER_NAME"] == "llama-70b-1"
    (wait,) = worker["spec"]["initContainers"]
    assert wait["name"] == "wait-gcs-ready" and wait["image"] == "vllm/vllm-openai:v0.9.0"
    assert "ray health-check --address $(ENTRY_ADDRESS):6379" in wait["args"][0]
    assert _own_env(wait) == [{"name": "NCCL_SOCKET_IFNAME", "value": "eth0"}, *HEAD_AT]
    assert wait["resources"]["limits"] == {"cpu": "200m", "memory": "256Mi"}
    # No memory request: the limit sizes /dev/shm.
    assert worker["spec"]["volumes"] == [
        {"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "200Gi"}}
    ]


RAY_CLUSTER = """
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: small
  labels: {team: search}
spec:
  rayVersion: "2.9.0"
  headGroupSpec:
    rayStartParams: {num-cpus: "0", port: "6380"}
    template:
      spec:
        containers:
        - name: ray-head
          image: rayproject/ray:2.9.0
          resources:
            limits: {cpu: 1500m, memory: 3Gi}
            requests: {cpu: 500m, memory: 2Gi}
  workerGroupSpecs:
  - groupName: cpu
    replicas: 5
    minReplicas: 1
    maxReplicas: 3
    rayStartParams: {block: "false", num-gpus: "0"}
    template:
      spec:
        containers:
        - name: ray-worker
          image: rayproject/ray:2.9.0
          command: [echo]
          args: [preparing]
          env: [{name: FQ_RAY_IP, value: mine}, {name: RAY_ADDRESS, value: "custom:1"}]
          resources:
            limits: {cpu: "2", memory: 4Gi}
"""


def test_kuberay_rewrites_the_command_of_a_raycluster_and_injects_probes(tmp_path: Path) -> None:
    result = imported(RAY_CLUSTER)
    out = only_resource(result)
    assert out["metadata"] == {"name": "small", "labels": {"team": "search"}}
    role = out["spec"]["template"]["roles"][0]
    assert role["workerReplicas"] == 3  # replicas 5 within [1, 3]
    head, *workers = group_pods(serving(out))
    assert len(workers) == 3
    head_ray = head["spec"]["containers"][0]
    head_start = (
        "ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  "
        "--memory=3221225472  --metrics-export-port=8080  --num-cpus=0  --port=6380 "
    )
    assert head_ray["command"] == ["/bin/bash", "-lc", "--"]
    assert head_ray["args"] == [f"ulimit -n 65536; {head_start}"]
    assert {"name": "RAY_PORT", "value": "6380"} in head_ray["env"]
    assert head["spec"]["volumes"] == [
        {"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}
    ]
    head_check = (
        "wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && "
        "wget -T 10 -q -O- http://localhost:8265/api/gcs_healthz | grep success"
    )
    assert head_ray["readinessProbe"] == {
        "exec": {"command": ["bash", "-c", head_check]},
        "initialDelaySeconds": 10,
        "timeoutSeconds": 2,
        "periodSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": 10,
    }
    assert head_ray["livenessProbe"]["failureThreshold"] == 120
    worker = workers[0]["spec"]["containers"][0]
    # Upstream KubeRay forces --block; the user's command runs first, in the same shell.
    worker_start = (
        "ray start  --address=$(ENTRY_ADDRESS):6380  --block  --dashboard-agent-listen-port=52365  "
        "--memory=4294967296  --metrics-export-port=8080  --num-cpus=2  --num-gpus=0 "
    )
    assert worker["args"] == [f" echo  preparing  && ulimit -n 65536; {worker_start}"]
    own = _own_env(worker)
    # KubeRay appends FQ_RAY_IP after the user's (the last one wins) and keeps the user's RAY_ADDRESS.
    assert [e for e in own if e["name"] == "FQ_RAY_IP"] == [HEAD_AT[0]]
    assert [e for e in own if e["name"] == "RAY_ADDRESS"] == [{"name": "RAY_ADDRESS", "value": "custom:1"}]
    assert worker["readinessProbe"]["exec"]["command"][2].count("wget") == 1  # raylet only
    run = phalanx_import(tmp_path, RAY_CLUSTER)
    assert run.returncode == 0, run.stderr
    assert "small-head-svc is not created" in run.stdout
    assert "KubeRay runs 3" in run.stdout
    assert "block: 'false' has no effect" in run.stdout


def test_a_command_that_already_starts_ray_is_left_alone() -> None:
    text = RAY_CLUSTER.replace(
        "command: [echo]\n          args: [preparing]", "command: [sh, -c, 'ray start --address=x']"
    )
    worker = only_resource(imported(text))["spec"]["template"]["roles"][0]["workerTemplate"]
    assert worker["spec"]["containers"][0]["command"] == ["sh", "-c", "ray start --address=x"]
    assert "args" not in worker["spec"]["containers"][0]


def test_a_replica_set_keeps_running_clusters_and_has_no_fleet_label() -> None:
    text = FLEET.replace("kind: RayClusterFleet", "kind: RayClusterReplicaSet").replace(
        "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n", ""
    )
    result = imported(text)
    out = only_resource(result)
    assert "rolloutStrategy" not in out["spec"]
    assert "leaves running Ray pods on their old template" in notes_text(result)
    for pod in group_pods(serving(out)):
        assert "orchestration.aibrix.ai/raycluster-fleet-name" not in pod["metadata"]["labels"]


@pytest.mark.parametrize(
    ("strategy", "expected", "lost"),
    [
        (
            "{type: Recreate}",
            {
                "type": "ServingGroupRollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": "100%", "maxSurge": 0},
            },
            "Recreate removes every old Ray cluster",
        ),
        ("{type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}", None, "never ran"),
        ("{}", None, "never ran"),
    ],
)
def test_fleet_strategies_that_differ_are_lost(
    tmp_path: Path, strategy: str, expected: Any, lost: str
) -> None:
    text = FLEET.replace(
        "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n",
        f"  strategy: {strategy}\n",
    )
    out = only_resource(imported(text))
    assert out["spec"].get("rolloutStrategy") == expected
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 3, run.stderr
    assert lost in run.stderr


def test_budgets_that_both_come_to_zero_replace_one_cluster_at_a_time() -> None:
    text = FLEET.replace("{maxSurge: 1, maxUnavailable: 0}", "{maxSurge: 0, maxUnavailable: 25%}")
    result = imported(text)
    config = only_resource(result)["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]
    assert config == {"maxSurge": 0, "maxUnavailable": 1}  # 25% of 2 rounds down to 0
    assert "both come to 0" in notes_text(result)


def test_several_worker_groups_with_pods_are_an_input_error(tmp_path: Path) -> None:
    second = """
      - groupName: more
        replicas: 2
        template:
          spec:
            containers: [{name: w, image: vllm/vllm-openai:v0.9.0}]
"""
    text = FLEET.rstrip("\n") + second
    with pytest.raises(InputError) as caught:
        imported(text)
    (problem,) = caught.value.problems
    assert problem.path == ("spec", "template", "spec", "workerGroupSpecs")
    assert "gpu-workers, more" in problem.message and "merge them" in problem.fix
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 1
    assert "workerGroupSpecs: has 2 worker groups" in run.stderr and "Traceback" not in run.stderr
    # A group that runs no pods is left out instead.
    idle = text.replace("replicas: 2\n        template", "replicas: 0\n        template")
    result = imported(idle)
    assert "worker group more runs no pods" in notes_text(result)
    assert only_resource(result)["spec"]["template"]["roles"][0]["workerReplicas"] == 1


def test_numofhosts_multiplies_workers_and_autoscaling_is_lost(tmp_path: Path) -> None:
    text = FLEET.replace("maxReplicas: 1\n", "maxReplicas: 1\n        numOfHosts: 2\n").replace(
        "      rayVersion:", "      enableInTreeAutoscaling: true\n      rayVersion:"
    )
    assert only_resource(imported(text))["spec"]["template"]["roles"][0]["workerReplicas"] == 2
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 3
    assert "Ray's autoscaler" in run.stderr and "numOfHosts 2" in run.stderr


def test_a_suspended_cluster_runs_no_groups() -> None:
    text = RAY_CLUSTER.replace('  rayVersion: "2.9.0"', '  rayVersion: "2.9.0"\n  suspend: true')
    out = only_resource(imported(text))
    assert out["spec"]["replicas"] == 0
    assert not [o for o in steady_state(serving(out)) if o["kind"] == "Pod"]


def test_the_volcano_label_gangs_each_group_in_its_queue() -> None:
    text = RAY_CLUSTER.replace(
        "  labels: {team: search}",
        "  labels: {team: search, ray.io/scheduler-name: volcano, volcano.sh/queue-name: research}",
    )
    out = only_resource(imported(text))
    assert out["metadata"] == {
        "name": "small",
        "labels": {"team": "search"},
        "annotations": {"scheduling.volcano.sh/queue-name": "research"},
    }
    ms = serving(out)
    assert ms.spec.scheduler_name == "volcano"
    assert gang_min_member(ms) == 4  # KubeRay's PodGroup: the head and every desired worker


def test_head_service_settings_are_lost(tmp_path: Path) -> None:
    text = RAY_CLUSTER.replace(
        '  rayVersion: "2.9.0"', '  rayVersion: "2.9.0"\n  headServiceAnnotations: {cloud/lb: internal}'
    )
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 3
    assert "headServiceAnnotations (cloud/lb)" in run.stderr


def test_ray_start_params_must_be_strings_and_shapes_are_checked(tmp_path: Path) -> None:
    text = FLEET.replace('block: "false"', "block: false").replace(
        "env: [{name: NCCL_SOCKET_IFNAME, value: eth0}]", "env: {NCCL_SOCKET_IFNAME: eth0}"
    )
    with pytest.raises(InputError) as caught:
        imported(text)
    messages = {problem.path[-1]: problem for problem in caught.value.problems}
    assert messages["block"].fix == "quote it: 'false'"
    assert messages["env"].message == "must be a list"
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 1 and "Traceback" not in run.stderr


def test_the_output_reads_the_same_in_yaml_1_1(tmp_path: Path) -> None:
    run = phalanx_import(tmp_path, FLEET)
    # kubectl reads YAML 1.1, where a plain `yes` is a boolean: the label value must stay a string.
    (document,) = yaml.safe_load_all(run.stdout)
    labels = document["spec"]["template"]["roles"][0]["entryTemplate"]["metadata"]["labels"]
    assert labels["ray.io/is-ray-node"] == "yes"
    assert document == only_resource(imported(FLEET))


def test_fields_kuberay_v1_2_1_lacks_are_pruned_in_a_fleet_and_lost_in_a_raycluster(tmp_path: Path) -> None:
    fleet = FLEET.replace("      rayVersion:", "      managedBy: someone\n      rayVersion:")
    run = phalanx_import(tmp_path, fleet)
    assert run.returncode == 0, run.stderr
    assert "managedBy dropped: AIBrix's CRD" in run.stdout
    cluster = RAY_CLUSTER.replace("    replicas: 5\n", "    replicas: 5\n    idleTimeoutSeconds: 60\n")
    run = phalanx_import(tmp_path, cluster)
    assert run.returncode == 3
    assert "workerGroupSpecs[0].idleTimeoutSeconds not imported" in run.stderr


def test_an_aibrix_podautoscaler_in_the_file_scales_the_modelserving() -> None:
    scaler = """
---
apiVersion: autoscaling.aibrix.ai/v1alpha1
kind: PodAutoscaler
metadata: {name: llama-70b-scaler, namespace: serving}
spec:
  scalingStrategy: KPA
  minReplicas: 1
  maxReplicas: 4
  scaleTargetRef: {apiVersion: orchestration.aibrix.ai/v1alpha1, kind: RayClusterFleet, name: llama-70b}
"""
    result = imported(FLEET + scaler)
    scaled = result.items[1]
    assert scaled.obj is not None
    assert scaled.obj["spec"]["scaleTargetRef"] == {
        "apiVersion": L.GROUP_VERSION,
        "kind": "ModelServing",
        "name": "llama-70b",
    }


def test_the_router_and_readiness_notes_name_what_to_add() -> None:
    text = FLEET.replace("              - {containerPort: 8000, name: service}\n", "")
    notes = notes_text(imported(text))
    assert "no serving port" in notes and "gcs 6379" in notes
    assert "the head has no readiness probe" in notes


def test_a_reference_to_kuberays_head_service_is_lost(tmp_path: Path) -> None:
    text = RAY_CLUSTER.replace('value: "custom:1"', 'value: "small-head-svc:6380"')
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 3
    assert "refers to small-head-svc, which does not exist here; use $(ENTRY_ADDRESS)" in run.stderr
