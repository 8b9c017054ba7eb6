"""The `phalanx` command as a user runs it: a real process, real files, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES


def phalanx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_validate_accepts_every_example() -> None:
    for example in sorted(EXAMPLES.glob("*.yaml")):
        result = phalanx("validate", "-f", str(example))
        assert result.returncode == 0, (example, result.stderr)
        assert "valid" in result.stderr


def test_validate_reports_every_error_with_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (EXAMPLES / "llama-multinode.yaml")
        .read_text()
        .replace("replicas: 1  # group replicas", "replicas: -1")
        .replace("workerReplicas: 1", "workerReplicas: 1\n        workerReplica: 2")
    )
    result = phalanx("validate", "-f", str(bad))
    assert result.returncode == 1
    assert f"{bad}:8:3: error: spec.replicas: must be at least 0 (got -1)" in result.stderr
    assert (
        "spec.template.roles[0].workerReplica: unknown field 'workerReplica'; fix: did you mean"
        in result.stderr
    )
    assert "2 errors" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    result = phalanx("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr
    assert "Traceback" not in result.stderr


def test_render_seed_yaml_and_json_agree() -> None:
    as_yaml = list(yaml.safe_load_all(phalanx("render", "-f", str(EXAMPLES / "llama-multinode.yaml")).stdout))
    as_json = json.loads(phalanx("render", "-f", str(EXAMPLES / "llama-multinode.yaml"), "-o", "json").stdout)
    assert as_json["kind"] == "List"
    assert as_json["items"] == as_yaml
    assert [o["metadata"]["name"] for o in as_yaml if o["kind"] == "Pod"] == [
        "llama-multinode-0-405b-0-0",
        "llama-multinode-0-405b-0-1",
        "llama-multinode-0-405b-1-0",
        "llama-multinode-0-405b-1-1",
    ]


def test_render_model_deployment_shows_the_plan_and_the_serving() -> None:
    result = phalanx("render", "-f", str(EXAMPLES / "llama-3.1-405b-2x8-h100.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# ModelDeployment/llama-405b planned as:")
    objects = list(yaml.safe_load_all(result.stdout))
    serving = objects[0]
    assert serving["kind"] == "ModelServing"
    role = serving["spec"]["template"]["roles"][0]
    assert role["workerReplicas"] == 1  # two nodes: entry + 1 worker
    script = role["entryTemplate"]["spec"]["containers"][0]["command"][2]
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 2" in script
    assert "--distributed-executor-backend ray" in script
    podgroup = next(o for o in objects if o["kind"] == "PodGroup")
    assert podgroup["spec"]["minMember"] == 2
    assert podgroup["spec"]["minResources"] == {"nvidia.com/gpu": "16"}


def test_plan_json_keys() -> None:
    result = phalanx(
        "plan",
        "--model",
        "llama-3.3-70b-instruct",
        "--instance-type",
        "Standard_NC80adis_H100_v5",
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    for key in (
        "nodes",
        "gpus_per_node",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "kv_cache_tokens",
        "max_concurrent_sequences",
    ):
        assert key in plan
    assert (
        plan["tensor_parallel_size"] * plan["pipeline_parallel_size"] == plan["nodes"] * plan["gpus_per_node"]
    )


def test_plan_that_cannot_fit_says_what_to_change() -> None:
    result = phalanx(
        "plan",
        "--model",
        "llama-3.1-405b-instruct",
        "--instance-type",
        "p5.48xlarge",
        "--nodes",
        "1",
        "--dtype",
        "bf16",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "GiB" in result.stderr


def test_plan_unknown_model_suggests_names() -> None:
    result = phalanx("plan", "--model", "llama-3.3-70b", "--instance-type", "p5.48xlarge")
    assert result.returncode == 1
    assert "llama-3.3-70b-instruct" in result.stderr


def test_files_kubectl_would_refuse_or_expand_read_the_same_way(tmp_path: Path) -> None:
    quickstart = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes((EXAMPLES / "quickstart.yaml").read_text().encode("utf-16"))
    result = phalanx("validate", "-f", str(utf16))
    assert result.returncode == 1
    assert "is not UTF-8 text" in result.stderr and "Traceback" not in result.stderr
    # A List (what `kubectl get -o yaml` prints) holds its objects; a JSON stream holds several.
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [quickstart]}))
    result = phalanx("validate", "-f", str(listed))
    assert result.returncode == 0, result.stderr
    second = {**quickstart, "metadata": {"name": "second"}, "spec": {**quickstart["spec"], "replicas": "2"}}
    stream = tmp_path / "stream.json"
    stream.write_text(json.dumps(quickstart) + "\n" + json.dumps(second) + "\n")
    result = phalanx("validate", "-f", str(stream))
    assert result.returncode == 1
    assert f"{stream}:2:" in result.stderr and "spec.replicas" in result.stderr
    kind = tmp_path / "kind.yaml"
    kind.write_text("apiVersion: serving.phalanx.dev/v1alpha1\nkind: []\nmetadata: {name: x}\n")
    result = phalanx("validate", "-f", str(kind))
    assert result.returncode == 1 and "kind: is not a Phalanx resource" in result.stderr
