"""Kthena ModelServing and ModelInfer manifests, as Kthena users have them, imported."""

from __future__ import annotations

from pathlib import Path

from phalanx.api.yamlfile import parse_yaml
from tests.conftest import EXAMPLES
from tests.unit.importers.helpers import (
    gang_min_member,
    group_pods,
    imported,
    notes_text,
    only_resource,
    phalanx_import,
    serving,
)

# What `kubectl get modelserving -o yaml` prints on a Kthena cluster: server-set metadata, the CRD's
# defaults (maxUnavailable on every role), a plugin and Kthena's status.
EXPORTED = """
apiVersion: workload.serving.volcano.sh/v1alpha1
kind: ModelServing
metadata:
  name: chat
  namespace: team-a
  uid: 0d5c3a1e-0000-4000-8000-000000000001
  resourceVersion: "4711"
  generation: 3
  creationTimestamp: "2026-01-02T03:04:05Z"
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"kind":"ModelServing"}'
    scheduling.volcano.sh/queue-name: inference
spec:
  replicas: 2
  schedulerName: volcano
  recoveryPolicy: RoleRecreate
  plugins:
  - name: lws-standard-labels
    type: BuiltIn
  rolloutStrategy:
    type: ServingGroupRollingUpdate
    rollingUpdateConfiguration:
      maxUnavailable: 1
  template:
    restartGracePeriodSeconds: 0
    gangPolicy:
      minRoleReplicas:
        prefill: 1
    roles:
    - name: prefill
      replicas: 2
      maxUnavailable: 1
      workerReplicas: 1
      entryTemplate:
        spec:
          containers:
          - name: engine
            image: vllm/vllm-openai:v0.11.1
            command: [sh, -c, "ray start --head && vllm serve m --port 8000"]
      workerTemplate:
        spec:
          containers:
          - name: engine
            image: vllm/vllm-openai:v0.11.1
            command: [sh, -c, "ray start --address=$(ENTRY_ADDRESS):6379 --block"]
    - name: decode
      replicas: 1
      maxUnavailable: 1
      workerReplicas: 0
      entryTemplate:
        spec:
          containers:
          - name: engine
            image: vllm/vllm-openai:v0.11.1
status:
  observedGeneration: 3
  replicas: 2
  availableReplicas: 2
  conditions:
  - type: Available
    status: "True"
    reason: AllGroupsReady
    message: All Serving groups are ready
    lastTransitionTime: "2026-01-02T03:05:00Z"
"""


def test_an_exported_kthena_object_imports_whole_and_keeps_its_groups(tmp_path: Path) -> None:
    result = imported(EXPORTED)
    out = only_resource(result)
    assert out["apiVersion"] == "serving.phalanx.dev/v1alpha1"
    assert "status" not in out
    assert out["metadata"] == {
        "name": "chat",
        "namespace": "team-a",
        "annotations": {"scheduling.volcano.sh/queue-name": "inference"},
    }
    assert "plugins" not in out["spec"]
    assert all("maxUnavailable" not in role for role in out["spec"]["template"]["roles"])
    assert not result.lost
    ms = serving(out)
    # Kthena: 2 prefill instances x (entry + 1 worker) + 1 decode entry = 5 pods per group; its PodGroup
    # counts 1 prefill instance (minRoleReplicas) + the decode instance = 3.
    pods = group_pods(ms)
    assert len(pods) == 5
    assert sorted(p["metadata"]["name"] for p in pods if p["metadata"]["name"].endswith("-0")) == [
        "chat-0-decode-0-0",
        "chat-0-prefill-0-0",
        "chat-0-prefill-1-0",
    ]
    assert gang_min_member(ms) == 3
    run = phalanx_import(tmp_path, EXPORTED)
    assert run.returncode == 0, run.stderr
    assert "# phalanx import: plugin lws-standard-labels is not needed" in run.stdout


def test_a_plugin_without_an_equivalent_is_a_loss_and_exits_3(tmp_path: Path) -> None:
    text = EXPORTED.replace("name: lws-standard-labels", "name: demo-pod-tweaks")
    result = imported(text)
    assert result.lost
    assert "plugin demo-pod-tweaks has no equivalent" in notes_text(result)
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 3
    assert "not kept: plugin demo-pod-tweaks" in run.stderr
    assert "1 setting had no Phalanx equivalent" in run.stderr


def test_role_rollout_settings_are_kept_where_they_act() -> None:
    text = EXPORTED.replace(
        "    type: ServingGroupRollingUpdate\n    rollingUpdateConfiguration:\n      maxUnavailable: 1\n",
        "    type: RoleRollingUpdate\n",
    ).replace("recoveryPolicy: RoleRecreate", "recoveryPolicy: None")
    out = only_resource(imported(text))
    assert [role.get("maxUnavailable") for role in out["spec"]["template"]["roles"]] == [1, 1]
    serving(out)


# The shape of Kthena's first API (ModelInfer), as its seed documentation shows it.
MODEL_INFER = """
apiVersion: workload.volcano.sh/v1alpha1
kind: ModelInfer
metadata:
  name: llama-multinode
spec:
  schedulerName: volcano
  replicas: 1
  recoveryPolicy: InferGroupRecreate
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
  rolloutStrategy:
    type: InferGroupRollingUpdate
    rollingUpdateConfiguration:
      maxSurge: 1
      partition: 0
  template:
    restartGracePeriodSeconds: 60
    gangSchedule:
      minRoleReplicas:
        405b: 1
      networkTopology:
        mode: hard
        highestTierAllowed: 1
    roles:
    - name: 405b
      replicas: 2
      entryTemplate:
        spec:
          affinity:
            podAffinity:
              preferredDuringSchedulingIgnoredDuringExecution:
              - weight: 10
                podAffinityTerm:
                  topologyKey: kubernetes.io/hostname
                  labelSelector:
                    matchExpressions:
                    - key: modelinfer.volcano.sh/group-name
                      operator: Exists
                  matchLabelKeys: [modelinfer.volcano.sh/group-name]
          containers:
          - name: leader
            image: vllm/vllm-openai:latest
            command: [sh, -c, "multi-node-serving.sh leader --ray_cluster_size=2; vllm serve m"]
      workerReplicas: 1
      workerTemplate:
        spec:
          containers:
          - name: worker
            image: vllm/vllm-openai:latest
            command: [sh, -c, "multi-node-serving.sh worker --ray_address=$(Leader_Node_Address)"]
            env:
            - name: ROLE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.labels['modelinfer.matrixinfer.ai/role']
"""


def test_a_model_infer_becomes_a_model_serving_with_the_new_names() -> None:
    result = imported(MODEL_INFER)
    out = only_resource(result)
    spec = out["spec"]
    assert out["kind"] == "ModelServing"
    assert spec["recoveryPolicy"] == "ServingGroupRecreate"
    assert spec["rolloutStrategy"]["type"] == "ServingGroupRollingUpdate"
    assert spec["rolloutStrategy"]["rollingUpdateConfiguration"] == {"maxSurge": 1, "partition": 0}
    assert "topologySpreadConstraints" not in spec
    template = spec["template"]
    assert template["gangPolicy"] == {"minRoleReplicas": {"405b": 1}}
    assert template["networkTopology"] == {"groupPolicy": {"mode": "hard", "highestTierAllowed": 1}}
    role = template["roles"][0]
    term = role["entryTemplate"]["spec"]["affinity"]["podAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term[0]["podAffinityTerm"]["matchLabelKeys"] == ["modelserving.volcano.sh/group-name"]
    env = role["workerTemplate"]["spec"]["containers"][0]["env"][0]
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['modelserving.volcano.sh/role']"
    # Nothing Kthena did is lost; the undefined variable is pointed out, not fixed silently.
    assert not result.lost
    text = notes_text(result)
    assert "$(Leader_Node_Address) is defined nowhere" in text
    assert "did you mean $(ENTRY_ADDRESS)?" in text
    assert "never read it" in text
    ms = serving(out)
    assert len(group_pods(ms)) == 4
    assert gang_min_member(ms) == 2


def test_the_matrixinfer_group_of_model_infer_imports_too() -> None:
    out = only_resource(imported(MODEL_INFER.replace("workload.volcano.sh", "workload.matrixinfer.ai")))
    serving(out)


def test_the_seed_manifest_in_kthenas_api_group_imports_to_our_example(tmp_path: Path) -> None:
    ours = (EXAMPLES / "llama-multinode.yaml").read_text()
    theirs = ours.replace("serving.phalanx.dev/v1alpha1", "workload.serving.volcano.sh/v1alpha1")
    assert theirs != ours
    run = phalanx_import(tmp_path, theirs)
    assert run.returncode == 0, run.stderr
    (document,) = parse_yaml(run.stdout)
    (expected,) = parse_yaml(ours)
    assert document.data == expected.data


def test_shell_command_substitutions_are_not_taken_for_variables() -> None:
    text = EXPORTED.replace(
        "ray start --head && vllm serve m --port 8000",
        "echo $(date -u +%s) $(hostname) $(MISSING_VAR) && vllm serve m --port 8000",
    )
    notes = notes_text(imported(text))
    assert "$(MISSING_VAR) is defined nowhere" in notes
    assert "$(date" not in notes and "$(hostname)" not in notes
