"""vLLM: DP or TP within a node, PP across nodes, wired by Ray or by vLLM's own multi-node launcher."""

from __future__ import annotations

import shlex
from typing import Any

from phalanx.engines.recipe import (
    ArgProblem,
    EngineInputs,
    RoleRecipe,
    kv_transfer_config,
    overridden_flags,
    pod_template,
    vllm_pd_env,
    vllm_pd_ports,
    wiring_overrides,
)

DEFAULT_IMAGE = "vllm/vllm-openai:v0.33.0"
RAY_PORT = 6379
MASTER_PORT = 29501
RAY_WAIT_SECONDS = 600
_DTYPE_FLAGS = {"bf16": ["--dtype", "bfloat16"], "fp16": ["--dtype", "float16"]}
_PLANNED_FLAGS = {
    "--data-parallel-size",
    "-dp",
    "--tensor-parallel-size",
    "-tp",
    "--pipeline-parallel-size",
    "-pp",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--distributed-executor-backend",
    "--nnodes",
    "--node-rank",
    "--kv-transfer-config",
}


# Flags the pods are wired by (recipe.WIRED_BY): engineArgs may not change them.
_WIRED = (
    "--port",
    "--host",
    "--served-model-name",
    "--nnodes",
    "--node-rank",
    "--master-addr",
    "--master-port",
)
_WIRED_HEADLESS = ("--headless",)
_PD_WIRED = ("--kv-transfer-config",)


def _refused(inputs: EngineInputs) -> tuple[ArgProblem, ...]:
    wired = _WIRED + _WIRED_HEADLESS + (_PD_WIRED if inputs.pd is not None else ())
    return tuple(wiring_overrides(inputs.engine_args, wired))


def _serve_args(inputs: EngineInputs, native_dtype_fp8: bool) -> list[str]:
    plan = inputs.plan
    args = [
        inputs.model_id,
        "--served-model-name",
        inputs.served_name,
        "--port",
        "8000",
        "--tensor-parallel-size",
        str(plan.tensor_parallel_size),
        "--pipeline-parallel-size",
        str(plan.pipeline_parallel_size),
        "--max-model-len",
        str(plan.max_model_len),
        "--gpu-memory-utilization",
        str(plan.gpu_memory_utilization),
    ]
    if plan.data_parallel_size > 1:  # replicas on this node's GPUs, one API server balancing between them
        args += ["--data-parallel-size", str(plan.data_parallel_size)]
    if plan.checkpoint_format == "mistral":  # params.json and consolidated weights, no HF config.json
        args += ["--tokenizer-mode", "mistral", "--config-format", "mistral", "--load-format", "mistral"]
    if plan.dtype == "fp8":
        if not native_dtype_fp8:
            args += ["--quantization", "fp8"]
    else:  # mxfp4 checkpoints keep their experts' quantisation; the rest runs in bf16
        args += _DTYPE_FLAGS["bf16" if plan.dtype == "mxfp4" else plan.dtype]
    if inputs.model_revision:
        args += ["--revision", inputs.model_revision]
    if inputs.pd is not None:
        args += ["--kv-transfer-config", kv_transfer_config(inputs.pd)]
    return args


def _pod(inputs: EngineInputs, **kwargs: Any) -> dict[str, Any]:
    """A pod template with the KV connector's env on every pod and its ports on the entry pod."""
    if inputs.pd is None:
        return pod_template(inputs, **kwargs)
    ports = vllm_pd_ports(inputs.pd) if kwargs["serves_http"] else []
    return pod_template(inputs, extra_env=vllm_pd_env(inputs.pd), extra_ports=ports, **kwargs)


def _notes(inputs: EngineInputs) -> tuple[str, ...]:
    planned = _PLANNED_FLAGS - set(_PD_WIRED if inputs.pd is not None else ()) - set(_WIRED)
    overridden = overridden_flags(inputs.engine_args, planned)
    if not overridden:
        return ()
    return (
        f"engineArgs override planned flags {', '.join(overridden)}; the plan's memory figures may not hold",
    )


def _ray(inputs: EngineInputs, serve: list[str]) -> RoleRecipe:
    nodes = inputs.plan.nodes
    # Data-parallel replicas are one node's processes, started by vLLM itself (its default `mp` executor).
    backend = [] if inputs.plan.data_parallel_size > 1 else ["--distributed-executor-backend", "ray"]
    serve_cmd = shlex.join(["vllm", "serve", *serve, *backend, *inputs.engine_args])
    if nodes == 1:
        entry_script = f"exec {serve_cmd}"
    else:
        count_alive = (
            "import ray; ray.init(address='auto', logging_level='ERROR'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        entry_script = "\n".join(
            [
                "set -eu",
                f'ray start --head --port={RAY_PORT} --node-ip-address="$POD_IP" --disable-usage-stats',
                f"deadline=$(( $(date +%s) + {RAY_WAIT_SECONDS} ))",
                f'until [ "$(python3 -c {shlex.quote(count_alive)} 2>/dev/null)" = "$GROUP_SIZE" ]; do',
                '  if [ "$(date +%s)" -ge "$deadline" ]; then',
                f'    echo "Ray workers did not all join within {RAY_WAIT_SECONDS}s"'
                ' "(want $GROUP_SIZE nodes)" >&2',
                "    exit 1",
                "  fi",
                "  sleep 5",
                "done",
                f"exec {serve_cmd}",
            ]
        )
    entry = _pod(inputs, command=["sh", "-c", entry_script], serves_http=True)
    worker = None
    if nodes > 1:
        worker_script = "\n".join(
            [
                "set -u",
                f"deadline=$(( $(date +%s) + {RAY_WAIT_SECONDS} ))",
                f'until ray start --address="$ENTRY_ADDRESS:{RAY_PORT}"'
                ' --node-ip-address="$POD_IP" --block; do',
                '  if [ "$(date +%s)" -ge "$deadline" ]; then',
                f'    echo "could not join the Ray head at $ENTRY_ADDRESS:{RAY_PORT}" >&2',
                "    exit 1",
                "  fi",
                "  sleep 5",
                "done",
            ]
        )
        worker = _pod(inputs, command=["sh", "-c", worker_script], serves_http=False)
    return RoleRecipe(
        entry=entry, worker=worker, worker_replicas=nodes - 1, notes=_notes(inputs), refused=_refused(inputs)
    )


def _native(inputs: EngineInputs, serve: list[str]) -> RoleRecipe:
    nodes = inputs.plan.nodes
    multi = ["--nnodes", str(nodes), "--master-addr", "$(ENTRY_ADDRESS)", "--master-port", str(MASTER_PORT)]
    if nodes == 1:
        entry = _pod(inputs, command=["vllm", "serve"], args=[*serve, *inputs.engine_args], serves_http=True)
        return RoleRecipe(
            entry=entry, worker=None, worker_replicas=0, notes=_notes(inputs), refused=_refused(inputs)
        )
    entry = _pod(
        inputs,
        command=["vllm", "serve"],
        args=[*serve, *multi, "--node-rank", "0", *inputs.engine_args],
        serves_http=True,
    )
    worker = _pod(
        inputs,
        command=["vllm", "serve"],
        args=[*serve, *multi, "--node-rank", "$(WORKER_INDEX)", "--headless", *inputs.engine_args],
        serves_http=False,
    )
    return RoleRecipe(
        entry=entry, worker=worker, worker_replicas=nodes - 1, notes=_notes(inputs), refused=_refused(inputs)
    )


def recipe(inputs: EngineInputs, *, native_dtype_fp8: bool = False) -> RoleRecipe:
    serve = _serve_args(inputs, native_dtype_fp8)
    if inputs.launcher == "native":
        return _native(inputs, serve)
    return _ray(inputs, serve)
