"""LeaderWorkerSet manifests imported: a group of leader + workers becomes a role instance."""

from __future__ import annotations

from pathlib import Path

from tests.unit.importers.helpers import (
    gang_min_member,
    group_pods,
    imported,
    notes_text,
    only_resource,
    phalanx_import,
    serving,
)

SGLANG = """
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata:
  name: sglang
spec:
  replicas: 3
  leaderWorkerTemplate:
    size: 4
    restartPolicy: RecreateGroupOnPodRestart
    leaderTemplate:
      metadata:
        labels:
          role: leader
      spec:
        containers:
        - name: leader
          image: lmsysorg/sglang:latest
          command: [python3, -m, sglang.launch_server, --nnodes, $(LWS_GROUP_SIZE),
                    --node-rank, $(LWS_WORKER_INDEX), --dist-init-addr, "$(LWS_LEADER_ADDRESS):20000",
                    --port, "40000"]
          ports: [{containerPort: 40000}]
    workerTemplate:
      spec:
        containers:
        - name: worker
          image: lmsysorg/sglang:latest
          command: [python3, -m, sglang.launch_server, --nnodes, $(LWS_GROUP_SIZE),
                    --node-rank, $(LWS_WORKER_INDEX), --dist-init-addr, "$(LWS_LEADER_ADDRESS):20000"]
---
apiVersion: v1
kind: Service
metadata:
  name: sglang-leader
spec:
  selector:
    leaderworkerset.sigs.k8s.io/name: sglang
    role: leader
  ports: [{port: 40000}]
"""


def test_a_group_becomes_a_role_instance_with_the_same_pods_and_commands(tmp_path: Path) -> None:
    result = imported(SGLANG)
    out = only_resource(result)
    spec = out["spec"]
    assert spec["replicas"] == 3
    assert spec["recoveryPolicy"] == "RoleRecreate"
    (role,) = spec["template"]["roles"]
    assert (role["name"], role["replicas"], role["workerReplicas"]) == ("default", 1, 3)
    assert role["entryTemplate"]["metadata"] == {"labels": {"role": "leader"}}
    ms = serving(out)
    pods = group_pods(ms, 2)
    # LWS: one leader and size - 1 workers per group, the leader template on the leader only.
    assert [p["metadata"]["name"] for p in pods] == [f"sglang-2-default-0-{i}" for i in range(4)]
    assert [p["spec"]["containers"][0]["name"] for p in pods] == ["leader", "worker", "worker", "worker"]
    leader_args = pods[0]["spec"]["containers"][0]["command"]
    assert "$(LWS_LEADER_ADDRESS):20000" in leader_args  # commands are not rewritten
    # Phalanx defines every LWS_* variable the commands use; nothing is reported undefined.
    assert "defined nowhere" not in notes_text(result)
    env = {item["name"]: item.get("value") for item in pods[1]["spec"]["containers"][0]["env"]}
    assert env["LWS_GROUP_SIZE"] == "4" and env["LWS_WORKER_INDEX"] == "1"
    # The user's Service selects the LWS name and a template label: both are on the entry pods.
    assert pods[0]["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/name"] == "sglang"
    assert pods[0]["metadata"]["labels"]["role"] == "leader"
    # The user's Service passes through untouched.
    service = result.items[1]
    assert not service.converted
    assert service.obj is not None and service.obj["kind"] == "Service"
    run = phalanx_import(tmp_path, SGLANG)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n---\n") == 1


def test_without_volcano_groups_keep_the_default_scheduler_and_no_gang() -> None:
    result = imported(SGLANG)
    ms = serving(only_resource(result))
    assert ms.spec.scheduler_name == "default-scheduler"
    assert gang_min_member(ms) is None
    assert "set volcano" in notes_text(result)


def test_volcano_in_the_templates_gives_each_group_a_gang_of_size_pods() -> None:
    text = SGLANG.replace(
        "      spec:\n        containers:", "      spec:\n        schedulerName: volcano\n        containers:"
    )
    result = imported(text)
    out = only_resource(result)
    for template in ("entryTemplate", "workerTemplate"):
        assert "schedulerName" not in out["spec"]["template"]["roles"][0][template]["spec"]
    ms = serving(out)
    assert ms.spec.scheduler_name == "volcano"
    assert gang_min_member(ms) == 4  # LWS's Volcano provider: minMember = size


def test_a_single_pod_group_has_no_workers() -> None:
    text = """
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata: {name: solo}
spec:
  leaderWorkerTemplate:
    workerTemplate:
      spec:
        containers: [{name: c, image: nginx, command: [nginx]}]
"""
    out = only_resource(imported(text))
    (role,) = out["spec"]["template"]["roles"]
    assert role["workerReplicas"] == 0 and "workerTemplate" not in role
    assert out["spec"]["replicas"] == 1
    assert len(group_pods(serving(out))) == 1


def test_restart_policies_map_to_recovery_policies() -> None:
    expected = {
        "None": ("None", False),
        "Default": ("None", False),
        "RecreateGroupAfterStart": ("RoleRecreate", True),
    }
    for policy, (recovery, lost) in expected.items():
        result = imported(
            SGLANG.replace("restartPolicy: RecreateGroupOnPodRestart", f"restartPolicy: {policy}")
        )
        assert only_resource(result)["spec"]["recoveryPolicy"] == recovery
        assert result.lost is lost, policy


def test_what_phalanx_cannot_keep_is_a_comment_and_exit_3(tmp_path: Path) -> None:
    text = SGLANG.replace(
        "  replicas: 3\n",
        "  replicas: 3\n  startupPolicy: LeaderReady\n",
    ).replace(
        "    restartPolicy: RecreateGroupOnPodRestart\n",
        "    restartPolicy: RecreateGroupOnPodRestart\n    subGroupPolicy: {subGroupSize: 2}\n"
        "    volumeClaimTemplates:\n    - metadata: {name: cache}\n"
        "      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}\n",
    )
    result = imported(text)
    lost = [note.text for item in result.items for note in item.notes if note.lost]
    assert any("LeaderReady" in t for t in lost)
    assert any("subGroupPolicy" in t for t in lost)
    assert any("ephemeral volumes" in t for t in lost)
    out = only_resource(result)
    volumes = out["spec"]["template"]["roles"][0]["workerTemplate"]["spec"]["volumes"]
    assert volumes[0]["name"] == "cache"
    assert volumes[0]["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"] == {
        "requests": {"storage": "10Gi"}
    }
    serving(out)
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 3
    assert "# phalanx import (not kept): startupPolicy LeaderReady" in run.stdout
    assert "3 settings had no Phalanx equivalent" in run.stderr


def test_exclusive_placement_becomes_affinity_on_the_group_key() -> None:
    text = SGLANG.replace(
        "  name: sglang\n",
        "  name: sglang\n  annotations:\n    leaderworkerset.sigs.k8s.io/exclusive-topology: rack\n",
        1,
    )
    out = only_resource(imported(text))
    assert "annotations" not in out["metadata"]
    for template in ("entryTemplate", "workerTemplate"):
        affinity = out["spec"]["template"]["roles"][0][template]["spec"]["affinity"]
        (together,) = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        (apart,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        key = "leaderworkerset.sigs.k8s.io/group-key"
        assert together["matchLabelKeys"] == [key] and together["topologyKey"] == "rack"
        assert apart["mismatchLabelKeys"] == [key] and apart["topologyKey"] == "rack"
    serving(out)


def test_an_autoscaler_of_the_group_set_scales_the_model_serving() -> None:
    text = (
        SGLANG
        + """
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: sglang-hpa}
spec:
  scaleTargetRef: {apiVersion: leaderworkerset.x-k8s.io/v1, kind: LeaderWorkerSet, name: sglang}
  minReplicas: 1
  maxReplicas: 4
"""
    )
    result = imported(text)
    hpa = result.items[2]
    assert hpa.obj is not None
    assert hpa.obj["spec"]["scaleTargetRef"] == {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelServing",
        "name": "sglang",
    }
    assert not result.lost


def test_bad_input_names_the_field_and_exits_1(tmp_path: Path) -> None:
    run = phalanx_import(tmp_path, SGLANG.replace("size: 4", "size: 0"))
    assert run.returncode == 1
    assert "spec.leaderWorkerTemplate.size: must be at least 1" in run.stderr
    assert run.stdout == ""
    nothing = phalanx_import(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    assert nothing.returncode == 1
    assert "holds no Kthena ModelServing" in nothing.stderr


def test_a_long_name_that_lws_allows_still_imports() -> None:
    name = "a" * 50
    result = imported(SGLANG.replace("name: sglang\n", f"name: {name}\n", 1))
    out = only_resource(result)
    assert out["spec"]["template"]["roles"][0]["name"] == "g"
    assert "role named g" in notes_text(result)
    serving(out)


def test_an_unknown_startup_policy_is_an_input_error(tmp_path: Path) -> None:
    run = phalanx_import(
        tmp_path, SGLANG.replace("  replicas: 3\n", "  replicas: 3\n  startupPolicy: Bogus\n", 1)
    )
    assert run.returncode == 1
    assert "spec.startupPolicy: is not a LeaderWorkerSet startup policy" in run.stderr


def test_objects_passed_through_must_still_be_kubernetes_objects(tmp_path: Path) -> None:
    run = phalanx_import(tmp_path, SGLANG + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x]}\n")
    assert run.returncode == 1
    assert "metadata.name: must be a string" in run.stderr
    bad = "---\napiVersion: serving.phalanx.dev/v1alpha1\nkind: ModelServing\nmetadata: {name: x}\nspec: {}\n"
    run = phalanx_import(tmp_path, SGLANG + bad)
    assert run.returncode == 1
    assert "spec.template" in run.stderr
