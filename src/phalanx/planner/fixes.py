"""The error for a model that does not fit, with the cheapest fixes that were checked to work.

Every fix is the result of planning again with one thing changed (more nodes, another instance type, fp8,
a shorter context), never a guess, so a user who applies one gets a plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from phalanx.planner.catalog.gpus import find_instance_type, instance_shape
from phalanx.planner.explain import describe_shape, layout_text, nodes_text
from phalanx.planner.layout import MAX_NODES, Layout, Setting, fewest_fitting
from phalanx.planner.memory import kv_cache_tokens, longest_sequence, needed_bytes, sequence_kv_bytes
from phalanx.planner.types import Dtype, InstanceType, MemoryBudget, PlanningError, PlanRequest
from phalanx.planner.units import format_gib

CONTEXT_STEP = 1024  # a suggested max_model_len is rounded down to a multiple of this


@dataclass(frozen=True)
class Attempt:
    """What was tried: the request, its resolved setting (dtype, context, pins), the node counts allowed."""

    request: PlanRequest
    setting: Setting
    node_counts: Sequence[int]  # ascending; the last is the largest allowed
    largest: Layout  # the layout with the most room per GPU at the largest allowed node count


def _outcome(found: Layout, max_model_len: int) -> str:
    tokens = kv_cache_tokens(found.budget, max_model_len)
    return (
        f"{nodes_text(found.nodes)}, {layout_text(found)},"
        f" {format_gib(found.budget.weights)} weights per GPU, {tokens:,} KV tokens"
        f" ({round(tokens / max_model_len, 2)} sequences of {max_model_len})"
    )


def more_nodes_fix(attempt: Attempt) -> str | None:
    """The fewest nodes beyond the allowed ones that fit, up to MAX_NODES."""
    req = attempt.request
    start = attempt.node_counts[-1] + 1
    found = fewest_fitting(attempt.setting, range(start, MAX_NODES + 1))
    if found is None:
        return None
    knob = "pin" if req.nodes is not None else "allow up to"
    return f"{knob} {nodes_text(found.nodes)}: fits with {_outcome(found, attempt.setting.max_model_len)}"


def _candidates(attempt: Attempt, instances: Sequence[InstanceType]) -> list[InstanceType]:
    """Instance types to suggest: other shapes, from the same cloud when the request's cloud is known."""
    shape = attempt.request.shape
    own = find_instance_type(shape.instance_type) if shape.instance_type else None
    return [
        instance
        for instance in instances
        if (own is None or instance.cloud == own.cloud)
        and (instance.gpu_count, instance.gpu.memory_bytes) != (shape.gpus_per_node, shape.gpu_memory_bytes)
    ]


def instance_fix(attempt: Attempt, instances: Sequence[InstanceType]) -> str | None:
    """The cheapest instance type that fits in the allowed nodes: fewest GPUs in all, then least memory."""
    best: tuple[tuple[int, int], InstanceType, Layout] | None = None
    for instance in _candidates(attempt, instances):
        setting = dataclasses.replace(attempt.setting, shape=instance_shape(instance))
        found = fewest_fitting(setting, attempt.node_counts)
        if found is None:
            continue
        cost = (found.nodes * instance.gpu_count, instance.gpu.memory_bytes)
        if best is None or cost < best[0]:
            best = (cost, instance, found)
    if best is None:
        return None
    _, instance, found = best
    outcome = _outcome(found, attempt.setting.max_model_len)
    return f"use {describe_shape(instance_shape(instance))}: fits with {outcome}"


def quantised_fix(attempt: Attempt) -> str | None:
    """Smaller weights that fit in the allowed nodes: the checkpoint's own mxfp4 experts, or fp8."""
    req = attempt.request
    native = req.model.native_dtype
    target: Dtype = "mxfp4" if native == "mxfp4" else "fp8"
    if attempt.setting.dtype == target:
        return None
    found = fewest_fitting(dataclasses.replace(attempt.setting, dtype=target), attempt.node_counts)
    if found is None:
        return None
    if native == target:
        how = f"serve the checkpoint's native {target} weights (leave dtype unset)"
    else:
        how = "quantise the weights to fp8 (1 byte each)"
    return f"{how}: fits with {_outcome(found, attempt.setting.max_model_len)}"


def context_fix(attempt: Attempt) -> str | None:
    """The longest max_model_len (a multiple of 1024) whose one sequence fits at the largest allowed nodes."""
    longest = longest_sequence(attempt.largest.budget)
    if longest is None:
        return None
    longest = longest // CONTEXT_STEP * CONTEXT_STEP
    if longest < CONTEXT_STEP:
        return None
    return (
        f"lower max_model_len to {longest} (the longest that fits on"
        f" {nodes_text(attempt.largest.nodes)}): {_outcome(attempt.largest, longest)}"
    )


def _field(req: PlanRequest) -> str | None:
    """The pinned request field most likely to blame: a pinned layout or node count."""
    if req.data_parallel_size is not None and req.data_parallel_size > 1:
        return "data_parallel_size"
    if req.tensor_parallel_size is not None:
        return "tensor_parallel_size"
    if req.nodes is not None:
        return "nodes"
    return None


def _share(budget: MemoryBudget) -> str:
    if budget.memory_model == "sglang":
        return f"SGLang's mem_fraction_static {budget.fraction}, which holds weights and KV cache only"
    return f"gpu_memory_utilization {budget.fraction}"


def no_fit_error(attempt: Attempt, instances: Sequence[InstanceType]) -> PlanningError:
    """What was needed vs available per GPU at the largest allowed node count, and what would fit."""
    req, largest, max_model_len = attempt.request, attempt.largest, attempt.setting.max_model_len
    budget = largest.budget
    needed = needed_bytes(budget, max_model_len)
    message = (
        f"{req.model.name} in {attempt.setting.dtype} with max_model_len {max_model_len} does not fit on"
        f" {nodes_text(largest.nodes)} of {describe_shape(req.shape)}"
        f" at {layout_text(largest)}:"
        f" each GPU of the most loaded stage needs {format_gib(needed)}"
        f" (weights {format_gib(budget.weights)} + runtime {format_gib(budget.runtime_overhead)}"
        f" + KV cache for one {max_model_len}-token sequence"
        f" {format_gib(sequence_kv_bytes(budget, max_model_len))})"
        f" but {format_gib(budget.usable)} is usable"
        f" ({format_gib(budget.gpu_total)} x {_share(budget)})"
    )
    candidates = (
        more_nodes_fix(attempt),
        instance_fix(attempt, instances),
        quantised_fix(attempt),
        context_fix(attempt),
    )
    return PlanningError(
        message,
        needed_bytes=needed,
        available_bytes=budget.usable,
        fixes=tuple(fix for fix in candidates if fix is not None),
        field=_field(req),
    )
