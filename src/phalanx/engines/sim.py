"""The built-in vLLM-compatible simulator: same pod shape as vLLM, no GPU work.

Every pod runs `phalanx sim`; the pod whose WORKER_INDEX is 0 serves HTTP and waits for
GROUP_SIZE - 1 workers to join it at ENTRY_ADDRESS, as a multi-node vLLM head does.
"""

from __future__ import annotations

from phalanx.engines.recipe import EngineInputs, RoleRecipe, pod_template

DEFAULT_IMAGE = "phalanx:0.1.0"
JOIN_PORT = 8001


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
        *inputs.engine_args,
    ]


def recipe(inputs: EngineInputs, *, native_dtype_fp8: bool = False) -> RoleRecipe:
    args = sim_args(inputs)
    join_port = [{"name": "join", "containerPort": JOIN_PORT}]
    entry = pod_template(
        inputs,
        command=["phalanx", "sim"],
        args=args,
        serves_http=True,
        shared_memory=False,
        extra_ports=join_port,
    )
    worker = None
    if inputs.plan.nodes > 1:
        worker = pod_template(
            inputs, command=["phalanx", "sim"], args=args, serves_http=False, shared_memory=False
        )
    return RoleRecipe(entry=entry, worker=worker, worker_replicas=inputs.plan.nodes - 1)
