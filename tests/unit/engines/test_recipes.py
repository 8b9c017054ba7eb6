"""Engine recipes: the commands, env, probes and GPU requests of entry and worker pods."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from phalanx import planner
from phalanx.api import ModelDeployment, SpecError, parse_resource
from phalanx.compiler import compile_deployment
from phalanx.engines import RECIPES, EngineInputs
from phalanx.planner.types import PlanRequest


def two_node_plan() -> planner.Plan:
    return planner.make_plan(
        PlanRequest(
            model=planner.get_model("llama-3.1-405b-instruct"),
            shape=planner.shape_for_instance("p5.48xlarge"),
            max_nodes=2,
            max_model_len=8192,
        )
    )


def inputs(**overrides: Any) -> EngineInputs:
    values: dict[str, Any] = {
        "plan": two_node_plan(),
        "model_id": "meta-llama/Llama-3.1-405B-Instruct",
        "served_name": "llama-405b",
        "image": "vllm/vllm-openai:v0.33.0",
    }
    values.update(overrides)
    return EngineInputs(**values)


def container(template: dict[str, Any] | None) -> dict[str, Any]:
    assert template is not None
    result: dict[str, Any] = template["spec"]["containers"][0]
    return result


def test_plan_under_test_is_two_nodes_tp8_pp2() -> None:
    plan = two_node_plan()
    assert (plan.nodes, plan.tensor_parallel_size, plan.pipeline_parallel_size) == (2, 8, 2)


SERVE_405B = (
    "vllm serve meta-llama/Llama-3.1-405B-Instruct --served-model-name llama-405b --port 8000 "
    "--tensor-parallel-size 8 --pipeline-parallel-size 2 --max-model-len 8192 "
    "--gpu-memory-utilization 0.9 --dtype bfloat16"
)
# 405B's weights put the startup budget at its 180 min cap; the rendezvous waits as long.
NATIVE_405B = (
    "--nnodes 2 --master-addr $ENTRY_ADDRESS --master-port 29501 --distributed-timeout-seconds 10800"
)
# The Ray join waits as long as the startup budget (180 min for 405B) unless the pod's env says less.
RAY_DEADLINE_405B = ("wait_s=${PHALANX_RAY_WAIT_SECONDS:-10800}", "deadline=$(( $(date +%s) + wait_s ))")
NO_RAY = (
    "  echo 'no ray command in this image: starting vLLM with its own multi-node launcher (--nnodes) instead"
    " (set spec.launcher: native to choose it, or use an image with Ray installed)' >&2"
)


def test_vllm_ray_entry_script() -> None:
    recipe = RECIPES["vllm"](inputs(launcher="ray"))
    assert recipe.worker_replicas == 1
    assert container(recipe.entry)["command"][2] == "\n".join(
        [
            "set -eu",
            "if ! command -v ray >/dev/null 2>&1; then",
            NO_RAY,
            f"  exec {SERVE_405B} {NATIVE_405B} --node-rank 0",
            "fi",
            'ray start --head --port=6379 --node-ip-address="$POD_IP" --disable-usage-stats',
            *RAY_DEADLINE_405B,
            """until [ "$(python3 -c 'import ray; ray.init(address='"'"'auto'"'"',"""
            """ logging_level='"'"'ERROR'"'"'); print(sum(1 for n in ray.nodes() if n['"'"'Alive'"'"']))'"""
            """ 2>/dev/null)" = "$GROUP_SIZE" ]; do""",
            '  if [ "$(date +%s)" -ge "$deadline" ]; then',
            '    echo "Ray workers did not all join within ${wait_s}s" "(want $GROUP_SIZE nodes)" >&2',
            "    exit 1",
            "  fi",
            "  sleep 5",
            "done",
            f"exec {SERVE_405B} --distributed-executor-backend ray",
        ]
    )


def test_vllm_ray_worker_script() -> None:
    recipe = RECIPES["vllm"](inputs(launcher="ray"))
    assert container(recipe.worker)["command"][2] == "\n".join(
        [
            "set -u",
            "if ! command -v ray >/dev/null 2>&1; then",
            NO_RAY,
            f"  exec {SERVE_405B} {NATIVE_405B} --node-rank $WORKER_INDEX --headless",
            "fi",
            *RAY_DEADLINE_405B,
            'until ray start --address="$ENTRY_ADDRESS:6379" --node-ip-address="$POD_IP" --block; do',
            '  if [ "$(date +%s)" -ge "$deadline" ]; then',
            '    echo "could not join the Ray head at $ENTRY_ADDRESS:6379" >&2',
            "    exit 1",
            "  fi",
            "  sleep 5",
            "done",
        ]
    )


@pytest.mark.parametrize("launcher", ["ray", "native"])
def test_vllm_api_server_waits_for_its_engine_as_long_as_the_startup_probe(launcher: str) -> None:
    recipe = RECIPES["vllm"](inputs(launcher=launcher))
    assert {"name": "VLLM_ENGINE_READY_TIMEOUT_S", "value": "10800"} in container(recipe.entry)["env"]


def test_vllm_ray_launcher_on_one_node_needs_no_ray() -> None:
    plan = replace(two_node_plan(), nodes=1)
    recipe = RECIPES["vllm"](inputs(launcher="ray", plan=plan))
    assert container(recipe.entry)["command"] == ["vllm", "serve"]
    assert "--distributed-executor-backend" not in container(recipe.entry)["args"]
    assert recipe.worker is None


def test_vllm_native_launcher_flags() -> None:
    recipe = RECIPES["vllm"](inputs(launcher="native"))
    entry_args = container(recipe.entry)["args"]
    worker_args = container(recipe.worker)["args"]
    assert entry_args[entry_args.index("--nnodes") + 1] == "2"
    assert entry_args[entry_args.index("--node-rank") + 1] == "0"
    assert entry_args[entry_args.index("--master-addr") + 1] == "$(ENTRY_ADDRESS)"
    assert worker_args[worker_args.index("--node-rank") + 1] == "$(WORKER_INDEX)"
    assert "--headless" in worker_args
    assert "--headless" not in entry_args
    assert "--distributed-executor-backend" not in entry_args
    for args in (entry_args, worker_args):
        assert args[args.index("--distributed-timeout-seconds") + 1] == "10800"


def test_sglang_flags() -> None:
    recipe = RECIPES["sglang"](inputs())
    args = container(recipe.entry)["args"]
    assert container(recipe.entry)["command"] == ["python3", "-m", "sglang.launch_server"]
    assert args[args.index("--dist-init-addr") + 1] == "$(ENTRY_ADDRESS):20000"
    assert args[args.index("--nnodes") + 1] == "2"
    assert args[args.index("--tp-size") + 1] == "8"
    assert args[args.index("--pp-size") + 1] == "2"
    worker_args = container(recipe.worker)["args"]
    assert worker_args[worker_args.index("--node-rank") + 1] == "$(WORKER_INDEX)"


@pytest.mark.parametrize("engine", ["vllm", "sim"])
def test_readiness_is_http_health_on_the_entry_only(engine: str) -> None:
    recipe = RECIPES[engine](inputs())
    entry = container(recipe.entry)
    assert entry["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert entry["startupProbe"]["httpGet"]["path"] == "/health"
    assert entry["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "http", "containerPort": 8000} in entry["ports"]
    worker = container(recipe.worker)
    assert "readinessProbe" not in worker


def test_sglang_probes_ask_ready_often_and_health_rarely_with_time_to_generate() -> None:
    entry = container(RECIPES["sglang"](inputs()).entry)
    ready = {"path": "/ready", "port": "http"}
    assert entry["startupProbe"]["httpGet"] == ready  # 200 after SGLang's warm-up request
    assert entry["readinessProbe"] == {
        "httpGet": ready,
        "periodSeconds": 5,
        "timeoutSeconds": 5,
        "failureThreshold": 2,
    }
    # /health generates a token and may take SGLang's 20 s health-check timeout to answer.
    assert entry["livenessProbe"] == {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": 30,
        "timeoutSeconds": 30,
        "failureThreshold": 3,
    }
    assert "readinessProbe" not in container(RECIPES["sglang"](inputs()).worker)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_gpu_requests_take_the_whole_node(engine: str) -> None:
    recipe = RECIPES[engine](inputs())
    for template in (recipe.entry, recipe.worker):
        resources = container(template)["resources"]
        assert resources == {"limits": {"nvidia.com/gpu": "8"}, "requests": {"nvidia.com/gpu": "8"}}


def test_startup_probe_outlasts_model_load() -> None:
    # 405B in bf16 is ~756 GiB of weights: 15 min + 756 x 18 s > 180 min, so the 180 min cap applies.
    probe = container(RECIPES["vllm"](inputs()).entry)["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 180 * 60


def test_engine_args_come_last_and_are_reported() -> None:
    recipe = RECIPES["vllm"](inputs(launcher="native", engine_args=("--tensor-parallel-size", "4")))
    assert container(recipe.entry)["args"][-2:] == ["--tensor-parallel-size", "4"]
    assert any("--tensor-parallel-size" in note for note in recipe.notes)


def test_model_access_secret_becomes_hf_token() -> None:
    env = container(RECIPES["vllm"](inputs(model_access_secret="hf")).entry)["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}} in env


def deployment(**spec: Any) -> ModelDeployment:
    data = {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": {"model": "tiny-test", "engine": "sim", "gpusPerNode": 1, "gpuMemory": "24Gi", **spec},
    }
    md, problems = parse_resource(data)
    assert isinstance(md, ModelDeployment), [p.render() for p in problems]
    return md


def test_compile_tiny_sim_deployment() -> None:
    compiled = compile_deployment(deployment(replicas=3))
    ms = compiled.model_serving
    assert ms.spec.replicas == 3
    (role,) = ms.spec.template.roles
    assert (role.name, role.worker_replicas) == ("engine", 0)
    entry = role.entry_template.spec["containers"][0]
    assert entry["command"] == ["phalanx", "sim"]
    assert entry["args"][entry["args"].index("--kv-cache-tokens") + 1] == str(compiled.plan.kv_cache_tokens)


def test_compile_unknown_model_names_the_field() -> None:
    with pytest.raises(SpecError) as caught:
        compile_deployment(deployment(model="tiny-tst"))
    (error,) = caught.value.errors
    assert error.field == "spec.model.name"
    assert "tiny-test" in error.fix
    assert "phalanx plan --list" in error.fix


def test_compile_unknown_instance_names_the_field() -> None:
    md = deployment(gpusPerNode=None, gpuMemory=None, instanceType="p5.48xlarg")
    with pytest.raises(SpecError) as caught:
        compile_deployment(md)
    (error,) = caught.value.errors
    assert error.field == "spec.instanceType"
    assert "p5.48xlarge" in error.fix


def test_compile_custom_architecture() -> None:
    md = deployment(
        model={
            "name": "acme/small",
            "architecture": {
                "numHiddenLayers": 4,
                "hiddenSize": 512,
                "numAttentionHeads": 8,
                "numKeyValueHeads": 8,
                "intermediateSize": 1024,
                "vocabSize": 1000,
                "numParameters": 20_000_000,
                "maxPositionEmbeddings": 2048,
            },
        }
    )
    compiled = compile_deployment(md)
    assert compiled.plan.max_model_len == 2048
    assert compiled.plan.hf_id == "acme/small"


def test_compile_that_cannot_fit_is_a_spec_error_on_the_pinned_field() -> None:
    md = deployment(model="llama-3.1-405b-instruct", engine="vllm", gpusPerNode=1, gpuMemory="24Gi", nodes=1)
    with pytest.raises(SpecError) as caught:
        compile_deployment(md)
    (error,) = caught.value.errors
    assert error.field == "spec.nodes"  # the pinned node count is what does not fit
    assert "GiB" in error.message
    assert "maxModelLen" in error.message  # the spec's field names, not the planner's


def fp8_plan() -> planner.Plan:
    return planner.make_plan(
        PlanRequest(
            model=planner.get_model("llama-3.3-70b-instruct"),
            shape=planner.shape_for_instance("p5.48xlarge"),
            dtype="fp8",
            max_model_len=16384,
        )
    )


def test_vllm_quantises_bf16_weights_to_fp8_with_its_online_method() -> None:
    # vLLM 0.33: `--quantization fp8` is for fp8 checkpoints; online quantisation is fp8_per_tensor.
    recipe = RECIPES["vllm"](inputs(launcher="native", plan=fp8_plan()))
    args = container(recipe.entry)["args"]
    assert args[args.index("--quantization") + 1] == "fp8_per_tensor"
    assert "--dtype" not in args


def test_vllm_passes_no_quantization_for_an_fp8_checkpoint() -> None:
    recipe = RECIPES["vllm"](inputs(launcher="native", plan=fp8_plan()), native_dtype_fp8=True)
    assert "--quantization" not in container(recipe.entry)["args"]
