"""The plan as plain JSON-ready data, for `phalanx plan -o json` and for annotations on generated objects."""

from __future__ import annotations

from typing import Any

from phalanx.planner.types import GiB, LayoutOption, MemoryBudget, Plan, Throughput


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
    per_gpu: dict[str, Any] = {**figures, "kv_per_token": memory.kv_bytes_per_token}
    if memory.window_kv_bytes_per_token:
        per_gpu["kv_per_token_in_window"] = memory.window_kv_bytes_per_token
        per_gpu["sliding_window_tokens"] = memory.sliding_window
    return {"per_gpu_bytes": per_gpu, "per_gpu_gib": {name: _gib(value) for name, value in figures.items()}}


def throughput_to_dict(speed: Throughput | None) -> dict[str, Any] | None:
    """The decode estimate of a layout, rounded for reading (seconds to the microsecond)."""
    if speed is None:
        return None
    return {
        "batch_per_replica": speed.batch,
        "weight_bytes_read_per_gpu": speed.weight_bytes_read,
        "kv_bytes_read_per_gpu": speed.kv_bytes_read,
        "memory_seconds": round(speed.memory_seconds, 6),
        "allreduce_seconds": round(speed.allreduce_seconds, 6),
        "tokens_per_second_per_node": round(speed.tokens_per_second_per_node, 1),
    }


def layout_to_dict(option: LayoutOption) -> dict[str, Any]:
    return {
        "layout": option.label,
        "data_parallel_size": option.data_parallel_size,
        "tensor_parallel_size": option.tensor_parallel_size,
        "pipeline_parallel_size": option.pipeline_parallel_size,
        "throughput": throughput_to_dict(option.throughput),
        "ruled_out": option.ruled_out or None,
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
        "data_parallel_size": plan.data_parallel_size,
        "tensor_parallel_size": plan.tensor_parallel_size,
        "pipeline_parallel_size": plan.pipeline_parallel_size,
        "dtype": plan.dtype,
        "max_model_len": plan.max_model_len,
        "gpu_memory_utilization": plan.gpu_memory_utilization,
        "kv_cache_tokens": plan.kv_cache_tokens,
        "max_concurrent_sequences": plan.max_concurrent_sequences,
        "memory": memory_to_dict(plan.memory),
        "throughput": throughput_to_dict(plan.throughput),
        "layouts": [layout_to_dict(option) for option in plan.layouts],
        "warnings": list(plan.warnings),
        "arithmetic": list(plan.arithmetic),
    }
