"""The built-in vLLM-compatible simulator: same pod shape as vLLM, no GPU work.

Every pod runs `phalanx sim`; the pod whose WORKER_INDEX is 0 serves HTTP and waits for
GROUP_SIZE - 1 workers to join it at ENTRY_ADDRESS, as a multi-node vLLM head does.
"""

from __future__ import annotations

from typing import Any

from phalanx.engines.recipe import (
    EngineInputs,
    PdRole,
    RoleRecipe,
    kv_transfer_config,
    pod_template,
    vllm_pd_env,
    vllm_pd_ports,
    wiring_overrides,
)

DEFAULT_IMAGE = "phalanx:0.1.0"
JOIN_PORT = 8001
# Flags the pods are wired by (recipe.WIRED_BY): engineArgs may not change them.
_WIRED = ("--port", "--host", "--served-model-name", "--join-port")
_PD_WIRED = ("--kv-transfer-config",)


def sim_args(inputs: EngineInputs) -> list[str]:
    plan = inputs.plan
    return [
        "--served-model-name",
        inputs.served_name,
        "--port",
        "8000",
        "--join-port",
        str(JOIN_PORT),
        "--max-model-len",
        str(plan.max_model_len),
        "--kv-cache-tokens",
        str(plan.kv_cache_tokens),
        "--tensor-parallel-size",
        str(plan.tensor_parallel_size),
        "--pipeline-parallel-size",
        str(plan.pipeline_parallel_size),
        *(["--data-parallel-size", str(plan.data_parallel_size)] if plan.data_parallel_size > 1 else []),
        # The simulator speaks vLLM's connector protocol, so a PD quickstart runs the real flow.
        *(_pd_args(inputs.pd) if inputs.pd is not None else []),
        *inputs.engine_args,
    ]


def _pd_args(pd: PdRole) -> list[str]:
    args = ["--kv-transfer-config", kv_transfer_config(pd)]
    if pd.kv_bytes_per_token:
        args += ["--kv-bytes-per-token", str(pd.kv_bytes_per_token)]  # transfers take the model's size
    return args


def recipe(inputs: EngineInputs, *, native_dtype_fp8: bool = False) -> RoleRecipe:
    pd = inputs.pd
    pod: dict[str, Any] = {
        "command": ["phalanx", "sim"],
        "args": sim_args(inputs),
        "shared_memory": False,
        "extra_env": vllm_pd_env(pd) if pd is not None else [],
    }
    join = [{"name": "join", "containerPort": JOIN_PORT}]
    ports = join + (vllm_pd_ports(pd) if pd is not None else [])
    entry = pod_template(inputs, serves_http=True, extra_ports=ports, **pod)
    worker = pod_template(inputs, serves_http=False, **pod) if inputs.plan.nodes > 1 else None
    wired = _WIRED + (_PD_WIRED if pd is not None else ())
    refused = tuple(wiring_overrides(inputs.engine_args, wired))
    return RoleRecipe(entry=entry, worker=worker, worker_replicas=inputs.plan.nodes - 1, refused=refused)
