"""KAITO Workspaces and InferenceSets imported as ModelDeployments that Phalanx's planner sizes."""

from __future__ import annotations

from pathlib import Path

from phalanx.api import ModelDeployment, parse_resource
from phalanx.api.yamlfile import parse_yaml
from phalanx.compiler import compile_deployment
from tests.unit.importers.helpers import imported, notes_text, only_resource, phalanx_import, serving

WORKSPACE = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: tuned
data:
  inference_config.yaml: |
    max_probe_steps: 6
    vllm:
      gpu-memory-utilization: 0.85
      max-model-len: 16384
      enable-chunked-prefill: true
      enforce-eager: false
      max-num-seqs: 128
---
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: llama-70b
  annotations:
    kaito.sh/runtime: vllm
resource:
  count: 3
  instanceType: Standard_NC80adis_H100_v5
  labelSelector:
    matchLabels:
      apps: llama-70b
inference:
  preset:
    name: llama-3.3-70b-instruct
    presetOptions:
      modelAccessSecret: hf-token
  config: tuned
"""


def _deployment(obj: dict[str, object]) -> ModelDeployment:
    resource, problems = parse_resource(obj)
    assert not [p for p in problems if p.severity == "error"], problems
    assert isinstance(resource, ModelDeployment)
    return resource


def test_a_preset_workspace_becomes_a_model_deployment_with_its_config(tmp_path: Path) -> None:
    result = imported(WORKSPACE)
    out = only_resource(result)
    assert out["kind"] == "ModelDeployment"
    assert out["spec"] == {
        "model": "llama-3.3-70b-instruct",
        "engine": "vllm",
        "modelAccessSecret": "hf-token",
        "instanceType": "Standard_NC80adis_H100_v5",
        "nodeSelector": {"apps": "llama-70b"},
        "schedulerName": "default-scheduler",
        "gpuMemoryUtilization": 0.85,
        "maxModelLen": 16384,
        "engineArgs": ["--enable-chunked-prefill", "--no-enforce-eager", "--max-num-seqs=128"],
    }
    assert "annotations" not in out["metadata"]
    # The ConfigMap is folded into the ModelDeployment, not printed.
    (config_map,) = [item for item in result.items if item.source == "ConfigMap/tuned"]
    assert config_map.obj is None
    assert not result.lost
    text = notes_text(result)
    assert "resource.count 3 dropped" in text and "max_probe_steps" in text
    compiled = compile_deployment(_deployment(out))
    assert compiled.plan.max_model_len == 16384
    run = phalanx_import(tmp_path, WORKSPACE)
    assert run.returncode == 0, run.stderr
    assert "kind: ConfigMap" not in run.stdout


def test_settings_kaito_has_and_phalanx_lacks_are_losses() -> None:
    text = (
        WORKSPACE.replace(
            "  config: tuned\n", "  config: elsewhere\n  adapters:\n  - source: {name: a, image: x}\n"
        )
        .replace("kaito.sh/runtime: vllm", "kaito.sh/runtime: transformers\n    kaito.sh/enablelb: 'True'")
        .replace("  labelSelector:\n", "  preferredNodes: [n1]\n  labelSelector:\n")
    )
    result = imported(text)
    lost = "\n".join(note.text for item in result.items for note in item.notes if note.lost)
    for expected in (
        "ConfigMap elsewhere, which is not in this file",
        "adapters",
        "runtime transformers",
        "LoadBalancer",
        "preferredNodes",
    ):
        assert expected in lost
    _deployment(only_resource(result))


def test_bring_your_own_nodes_need_a_shape(tmp_path: Path) -> None:
    text = WORKSPACE.replace("  instanceType: Standard_NC80adis_H100_v5\n", "")
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 1
    assert "resource.instanceType: is empty (bring-your-own nodes)" in run.stderr
    assert "--gpus-per-node" in run.stderr
    out = only_resource(imported(text, gpusPerNode=8, gpuMemory="80Gi", gpuProduct="H100-SXM"))
    assert (out["spec"]["gpusPerNode"], out["spec"]["gpuMemory"]) == (8, "80Gi")
    compile_deployment(_deployment(out))
    ok = phalanx_import(tmp_path, text, "--instance-type", "p5.48xlarge")
    assert ok.returncode == 0, ok.stderr
    assert "instanceType: p5.48xlarge" in ok.stdout


def test_unknown_models_and_instances_are_input_errors_with_suggestions(tmp_path: Path) -> None:
    run = phalanx_import(
        tmp_path, WORKSPACE.replace("name: llama-3.3-70b-instruct", "name: llama-3.3-70b-instrct")
    )
    assert run.returncode == 1
    assert "inference.preset.name: is not a model Phalanx's planner knows" in run.stderr
    assert "did you mean llama-3.3-70b-instruct" in run.stderr
    run = phalanx_import(tmp_path, WORKSPACE.replace("Standard_NC80adis_H100_v5", "Standard_NC80adis_H100"))
    assert run.returncode == 1
    assert "resource.instanceType: is not an instance type" in run.stderr


def test_a_custom_template_workspace_runs_its_pod_as_one_role() -> None:
    text = """
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: custom}
resource:
  instanceType: Standard_NC24ads_A100_v4
  labelSelector: {matchLabels: {apps: custom}}
inference:
  template:
    spec:
      containers:
      - name: server
        image: example/llm:1
        command: [serve]
        resources: {limits: {nvidia.com/gpu: 1}}
"""
    out = only_resource(imported(text))
    assert out["kind"] == "ModelServing"
    (role,) = out["spec"]["template"]["roles"]
    assert role["workerReplicas"] == 0
    assert role["entryTemplate"]["spec"]["containers"][0]["image"] == "example/llm:1"
    serving(out)


def test_fine_tuning_is_not_imported(tmp_path: Path) -> None:
    text = """
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: tune}
resource: {instanceType: Standard_NC24ads_A100_v4}
tuning: {preset: {name: phi-3-mini-128k-instruct}, method: qlora}
"""
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 1
    assert "tuning: is a fine-tuning job" in run.stderr


def test_an_inference_set_is_replicas_of_one_deployment() -> None:
    text = """
apiVersion: kaito.sh/v1alpha1
kind: InferenceSet
metadata: {name: fleet}
spec:
  replicas: 3
  nodeCountLimit: 10
  labelSelector: {matchLabels: {apps: fleet}}
  template:
    resource: {instanceType: Standard_NC24ads_A100_v4}
    inference:
      preset: {name: llama-3.1-8b-instruct}
"""
    result = imported(text)
    out = only_resource(result)
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["nodeSelector"] == {"apps": "fleet"}
    assert result.lost and "nodeCountLimit 10" in notes_text(result)
    compile_deployment(_deployment(out))


def test_a_model_the_catalog_lacks_is_planned_from_its_config_json(tmp_path: Path) -> None:
    text = WORKSPACE.replace("name: llama-3.3-70b-instruct", "name: example-org/new-model")
    run = phalanx_import(tmp_path, text)
    assert run.returncode == 1
    assert "import with --model-config" in run.stderr
    config = Path(__file__).parents[1] / "planner" / "configs" / "llama-3.1-8b.json"
    run = phalanx_import(tmp_path, text, "--model-config", str(config))
    assert run.returncode == 0, run.stderr
    (document,) = [d for d in parse_yaml(run.stdout) if d.data["kind"] == "ModelDeployment"]
    model = document.data["spec"]["model"]
    assert model["name"] == "example-org/new-model"
    assert model["config"]["num_hidden_layers"] == 32


def test_kaitos_autoscaling_is_a_loss_not_a_scale_target(tmp_path: Path) -> None:
    text = """
apiVersion: kaito.sh/v1alpha1
kind: InferenceSet
metadata:
  name: fleet
  annotations: {scaledobject.kaito.sh/auto-provision: "true", scaledobject.kaito.sh/threshold: "10"}
spec:
  replicas: 2
  template:
    resource: {instanceType: Standard_NC24ads_A100_v4}
    inference: {preset: {name: llama-3.1-8b-instruct}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: fleet}
spec:
  scaleTargetRef: {apiVersion: kaito.sh/v1alpha1, kind: InferenceSet, name: fleet}
  maxReplicas: 4
"""
    result = imported(text)
    out = only_resource(result)
    assert "annotations" not in out["metadata"]
    lost = [note.text for item in result.items for note in item.notes if note.lost]
    assert any("KEDA ScaledObject" in t for t in lost)
    # A ModelDeployment has no scale subresource: the HPA is not pointed at it.
    (hpa,) = [item for item in result.items if item.source == "HorizontalPodAutoscaler/fleet"]
    assert hpa.obj is not None and hpa.obj["spec"]["scaleTargetRef"]["kind"] == "InferenceSet"
    assert any("no scale subresource" in t for t in lost)
    run = phalanx_import(tmp_path, text.replace("Standard_NC24ads_A100_v4", "Standard_NC24ads"))
    assert "fix: Import with --gpus-per-node" in run.stderr or "Otherwise import with" in run.stderr
