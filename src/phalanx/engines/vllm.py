"""vLLM: DP or TP within a node, PP across nodes, wired by Ray or by vLLM's own multi-node launcher."""

from __future__ import annotations

import shlex
from typing import Any

from phalanx.engines.recipe import (
    HTTP_WIRED,
    NODES_WIRED,
    ArgProblem,
    EngineInputs,
    RoleRecipe,
    kv_transfer_config,
    load_timeout_seconds,
    overridden_flags,
    pod_template,
    vllm_pd_env,
    vllm_pd_ports,
    wiring_overrides,
)

DEFAULT_IMAGE = "vllm/vllm-openai:v0.33.0"
RAY_PORT = 6379
MASTER_PORT = 29501
# Overrides the Ray launcher's wait for the group's nodes (seconds); the startup budget otherwise.
RAY_WAIT_ENV = "PHALANX_RAY_WAIT_SECONDS"
ONLINE_FP8 = "fp8_per_tensor"
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
    "--distributed-timeout-seconds",
}


# Flags the pods are wired by (recipe.WIRED_BY): engineArgs may not change them.
_WIRED = (*HTTP_WIRED, *NODES_WIRED, "--master-addr", "--master-port")
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
            # vLLM 0.33 keeps `fp8` for fp8 checkpoints; quantising bf16 weights at load is fp8_per_tensor.
            args += ["--quantization", ONLINE_FP8]
    else:  # mxfp4 checkpoints keep their experts' quantisation; the rest runs in bf16
        args += _DTYPE_FLAGS["bf16" if plan.dtype == "mxfp4" else plan.dtype]
    if inputs.model_revision:
        args += ["--revision", inputs.model_revision]
    if inputs.pd is not None:
        args += ["--kv-transfer-config", kv_transfer_config(inputs.pd)]
    return args


def _pod(
    inputs: EngineInputs, *, extra_env: list[dict[str, Any]] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """A pod template with the KV connector's env on every pod and its ports on the entry pod."""
    env = list(extra_env or [])
    if inputs.pd is None:
        return pod_template(inputs, extra_env=env, **kwargs)
    ports = vllm_pd_ports(inputs.pd) if kwargs["serves_http"] else []
    return pod_template(inputs, extra_env=env + vllm_pd_env(inputs.pd), extra_ports=ports, **kwargs)


def _notes(inputs: EngineInputs) -> tuple[str, ...]:
    planned = _PLANNED_FLAGS - set(_PD_WIRED if inputs.pd is not None else ()) - set(_WIRED)
    overridden = overridden_flags(inputs.engine_args, planned)
    if not overridden:
        return ()
    return (
        f"engineArgs override planned flags {', '.join(overridden)}; the plan's memory figures may not hold",
    )


def _ray(inputs: EngineInputs, serve: list[str]) -> RoleRecipe:
    """A Ray cluster across the nodes, when the image has Ray; vLLM's own launcher when it has not.

    vLLM 0.33 no longer depends on Ray, so its image may lack the `ray` command: each pod checks, and
    without it runs the native launcher's command line instead (every pod of a role runs the same image,
    so they agree). One node needs no cluster at all: vLLM starts its workers itself.
    """
    nodes = inputs.plan.nodes
    if nodes == 1:
        return _native(inputs, serve)
    # Data-parallel replicas are one node's processes, started by vLLM itself (its default `mp` executor).
    backend = [] if inputs.plan.data_parallel_size > 1 else ["--distributed-executor-backend", "ray"]
    serve_cmd = shlex.join(["vllm", "serve", *serve, *backend, *inputs.engine_args])
    count_alive = (
        "import ray; ray.init(address='auto', logging_level='ERROR'); "
        "print(sum(1 for n in ray.nodes() if n['Alive']))"
    )
    entry_script = "\n".join(
        [
            "set -eu",
            *_without_ray(_native_argv(inputs, serve, worker=False, shell=True)),
            f'ray start --head --port={RAY_PORT} --node-ip-address="$POD_IP" --disable-usage-stats',
            *_ray_deadline(inputs),
            f'until [ "$(python3 -c {shlex.quote(count_alive)} 2>/dev/null)" = "$GROUP_SIZE" ]; do',
            '  if [ "$(date +%s)" -ge "$deadline" ]; then',
            '    echo "Ray workers did not all join within ${wait_s}s" "(want $GROUP_SIZE nodes)" >&2',
            "    exit 1",
            "  fi",
            "  sleep 5",
            "done",
            f"exec {serve_cmd}",
        ]
    )
    entry = _pod(inputs, command=["sh", "-c", entry_script], serves_http=True, extra_env=_entry_env(inputs))
    worker_script = "\n".join(
        [
            "set -u",
            *_without_ray(_native_argv(inputs, serve, worker=True, shell=True)),
            *_ray_deadline(inputs),
            f'until ray start --address="$ENTRY_ADDRESS:{RAY_PORT}" --node-ip-address="$POD_IP" --block; do',
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


def _ray_deadline(inputs: EngineInputs) -> list[str]:
    """The script lines that set the Ray join deadline: the group's startup budget, as the native
    launcher's rendezvous and VLLM_ENGINE_READY_TIMEOUT_S wait (a slow image pull on one node must not
    fail the entry early); the pod's env may set a shorter one."""
    budget = load_timeout_seconds(inputs.plan)
    return [f"wait_s=${{{RAY_WAIT_ENV}:-{budget}}}", "deadline=$(( $(date +%s) + wait_s ))"]


_SHELL_VARIABLES = frozenset({"$ENTRY_ADDRESS", "$WORKER_INDEX"})
NO_RAY_MESSAGE = (
    "no ray command in this image: starting vLLM with its own multi-node launcher (--nnodes) instead"
    " (set spec.launcher: native to choose it, or use an image with Ray installed)"
)


def _without_ray(native_cmd: str) -> list[str]:
    """The script lines that run the native launcher's command when the image has no `ray`."""
    return [
        "if ! command -v ray >/dev/null 2>&1; then",
        f"  echo {shlex.quote(NO_RAY_MESSAGE)} >&2",
        f"  exec {native_cmd}",
        "fi",
    ]


def _entry_env(inputs: EngineInputs) -> list[dict[str, Any]]:
    """The API server waits this long for its engine (model load, and the other nodes' workers joining):
    as long as the startup probe waits, not vLLM's default 600 s."""
    return [{"name": "VLLM_ENGINE_READY_TIMEOUT_S", "value": str(load_timeout_seconds(inputs.plan))}]


def _native_args(inputs: EngineInputs, serve: list[str], *, worker: bool, shell: bool) -> list[str]:
    """`vllm serve` arguments of vLLM's own multi-node launcher for the entry (node rank 0) or a worker.

    `shell`: for a shell script, which expands $VAR, not Kubernetes' $(VAR).
    """
    address, rank = ("$ENTRY_ADDRESS", "$WORKER_INDEX") if shell else ("$(ENTRY_ADDRESS)", "$(WORKER_INDEX)")
    multi = [
        "--nnodes",
        str(inputs.plan.nodes),
        "--master-addr",
        address,
        "--master-port",
        str(MASTER_PORT),
        # The group's rendezvous waits as long as a pod's startup may take (image pull, model load),
        # not PyTorch's default 600 s.
        "--distributed-timeout-seconds",
        str(load_timeout_seconds(inputs.plan)),
    ]
    node = ["--node-rank", rank, "--headless"] if worker else ["--node-rank", "0"]
    return [*serve, *multi, *node, *inputs.engine_args]


def _native_argv(inputs: EngineInputs, serve: list[str], *, worker: bool, shell: bool) -> str:
    """The native launcher's command as a shell command line ($VARs left for the shell to expand)."""
    args = _native_args(inputs, serve, worker=worker, shell=shell)
    return " ".join(arg if arg in _SHELL_VARIABLES else shlex.quote(arg) for arg in ["vllm", "serve", *args])


def _native(inputs: EngineInputs, serve: list[str]) -> RoleRecipe:
    nodes = inputs.plan.nodes
    env = _entry_env(inputs)
    if nodes == 1:
        entry = _pod(
            inputs,
            command=["vllm", "serve"],
            args=[*serve, *inputs.engine_args],
            serves_http=True,
            extra_env=env,
        )
        return RoleRecipe(
            entry=entry, worker=None, worker_replicas=0, notes=_notes(inputs), refused=_refused(inputs)
        )
    entry = _pod(
        inputs,
        command=["vllm", "serve"],
        args=_native_args(inputs, serve, worker=False, shell=False),
        serves_http=True,
        extra_env=env,
    )
    worker = _pod(
        inputs,
        command=["vllm", "serve"],
        args=_native_args(inputs, serve, worker=True, shell=False),
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
