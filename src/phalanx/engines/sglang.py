"""SGLang: the same launch_server command on every node, node rank from WORKER_INDEX."""

from __future__ import annotations

from typing import Any

from phalanx.engines.recipe import (
    HTTP_WIRED,
    NODES_WIRED,
    SGLANG_PROBES,
    EngineInputs,
    PdRole,
    RoleRecipe,
    overridden_flags,
    pod_template,
    wiring_overrides,
)

DEFAULT_IMAGE = "lmsysorg/sglang:v0.5.23"
DIST_INIT_PORT = 20000
_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
_PLANNED_FLAGS = {
    "--dp-size",
    "--dp",
    "--data-parallel-size",
    "--tp-size",
    "--tp",
    "--tensor-parallel-size",  # SGLang's long names for --tp-size and --pp-size
    "--pp-size",
    "--pipeline-parallel-size",
    "--context-length",
    "--mem-fraction-static",
    "--nnodes",
    "--node-rank",
    "--disaggregation-mode",
    "--disaggregation-transfer-backend",
    "--disaggregation-bootstrap-port",
}

# Flags the pods are wired by (recipe.WIRED_BY): engineArgs may not change them.
_WIRED = (*HTTP_WIRED, *NODES_WIRED, "--dist-init-addr", "--nccl-init-addr")  # two names, one flag
_PD_WIRED = ("--disaggregation-mode", "--disaggregation-transfer-backend", "--disaggregation-bootstrap-port")


def pd_args(pd: PdRole) -> list[str]:
    """SGLang's disaggregation flags; the prefill side serves the bootstrap its decode peers connect to."""
    args = ["--disaggregation-mode", pd.kind, "--disaggregation-transfer-backend", pd.connector]
    if pd.kind == "prefill":
        args += ["--disaggregation-bootstrap-port", str(pd.bootstrap_port)]
    return args


def _bootstrap_port(pd: PdRole | None) -> list[dict[str, Any]]:
    if pd is None or pd.kind != "prefill":
        return []
    return [{"name": "bootstrap", "containerPort": pd.bootstrap_port}]


def recipe(inputs: EngineInputs, *, native_dtype_fp8: bool = False) -> RoleRecipe:
    plan = inputs.plan
    args = [
        "--model-path",
        inputs.model_id,
        "--served-model-name",
        inputs.served_name,
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--tp-size",
        str(plan.tensor_parallel_size),
        "--pp-size",
        str(plan.pipeline_parallel_size),
        "--context-length",
        str(plan.max_model_len),
        "--mem-fraction-static",
        str(plan.gpu_memory_utilization),
    ]
    if plan.data_parallel_size > 1:  # dp x tp GPUs; SGLang refuses --dp-size with --nnodes > 1
        args += ["--dp-size", str(plan.data_parallel_size)]
    if plan.dtype == "fp8":
        if not native_dtype_fp8:
            args += ["--quantization", "fp8"]
    else:  # mxfp4 checkpoints keep their experts' quantisation; the rest runs in bf16
        args += ["--dtype", _DTYPE["bf16" if plan.dtype == "mxfp4" else plan.dtype]]
    if inputs.model_revision:
        args += ["--revision", inputs.model_revision]
    if inputs.pd is not None:
        args += pd_args(inputs.pd)
    if plan.nodes > 1:
        args += ["--nnodes", str(plan.nodes), "--dist-init-addr", f"$(ENTRY_ADDRESS):{DIST_INIT_PORT}"]
    command = ["python3", "-m", "sglang.launch_server"]
    entry_args = args + (["--node-rank", "0"] if plan.nodes > 1 else []) + list(inputs.engine_args)
    entry = pod_template(
        inputs,
        command=command,
        args=entry_args,
        serves_http=True,
        extra_ports=_bootstrap_port(inputs.pd),
        probes=SGLANG_PROBES,
    )
    worker = None
    if plan.nodes > 1:
        worker_args = [*args, "--node-rank", "$(WORKER_INDEX)", *inputs.engine_args]
        worker = pod_template(inputs, command=command, args=worker_args, serves_http=False)
    wired = _WIRED + (_PD_WIRED if inputs.pd is not None else ())
    overridden = overridden_flags(inputs.engine_args, _PLANNED_FLAGS - set(wired))
    notes: tuple[str, ...] = (
        (f"engineArgs override planned flags {', '.join(overridden)}",) if overridden else ()
    )
    if plan.checkpoint_format == "mistral":
        notes += (
            f"{inputs.model_id} ships in Mistral's own format (params.json); Phalanx passes SGLang no loader"
            " flags for it: use engine vllm, or add the flags your SGLang version needs to engineArgs",
        )
    refused = tuple(wiring_overrides(inputs.engine_args, wired))
    return RoleRecipe(
        entry=entry, worker=worker, worker_replicas=plan.nodes - 1, notes=notes, refused=refused
    )
