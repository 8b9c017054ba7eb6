"""The plan as plain JSON-ready data, for `phalanx plan --json` and for annotations on generated objects."""

from __future__ import annotations

from typing import Any

from phalanx.planner.types import GiB, MemoryBudget, Plan


def _gib(n: int) -> float:
    return round(n / GiB, 2)


def memory_to_dict(memory: MemoryBudget) -> dict[str, Any]:
    """Per-GPU bytes on the heaviest stage, each also in GiB (2 decimals) for people reading the JSON."""
    figures = {
        "gpu_total": memory.gpu_total,
        "usable": memory.usable,
        "weights": memory.weights,
        "runtime_overhead": memory.runtime_overhead,
        "kv_cache": memory.kv_cache,
    }
    return {
        "per_gpu_bytes": {**figures, "kv_per_token": memory.kv_bytes_per_token},
        "per_gpu_gib": {name: _gib(value) for name, value in figures.items()},
    }


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """Every field of `plan` as JSON types (ints, floats, strings, lists, dicts)."""
    return {
        "model": plan.model,
        "hf_id": plan.hf_id,
        "instance_type": plan.instance_type,
        "gpu_product": plan.gpu_product,
        "nodes": plan.nodes,
        "gpus_per_node": plan.gpus_per_node,
        "total_gpus": plan.total_gpus,
        "tensor_parallel_size": plan.tensor_parallel_size,
        "pipeline_parallel_size": plan.pipeline_parallel_size,
        "dtype": plan.dtype,
        "max_model_len": plan.max_model_len,
        "gpu_memory_utilization": plan.gpu_memory_utilization,
        "kv_cache_tokens": plan.kv_cache_tokens,
        "max_concurrent_sequences": plan.max_concurrent_sequences,
        "memory": memory_to_dict(plan.memory),
        "warnings": list(plan.warnings),
        "arithmetic": list(plan.arithmetic),
    }
