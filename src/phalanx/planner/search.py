"""`make_plan`: the fewest whole nodes of a shape that serve a model, or a PlanningError that says why not.

Rules: every pod takes a whole node; TP inside a node, PP across nodes (see `parallelism.py`); a plan must
hold weights, runtime overhead and at least one full `max_model_len` sequence on every GPU. A pinned node
count is used exactly as given (never silently lowered, unlike KAITO #1956); otherwise the fewest nodes
from 1 to `max_nodes` (or 64) win. Nothing that does not fit is ever returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.planner.catalog.gpus import INSTANCE_TYPES, find_gpu_product
from phalanx.planner.explain import arithmetic, nodes_text
from phalanx.planner.fixes import Attempt, no_fit_error
from phalanx.planner.layout import MAX_NODES, Layout, fewest_fitting, layout
from phalanx.planner.memory import fits, kv_cache_tokens
from phalanx.planner.parallelism import (
    TensorParallelChoice,
    choose_tensor_parallel,
    max_nodes_for_layers,
    pipeline_parallel_size,
)
from phalanx.planner.types import Dtype, InstanceType, Plan, PlanningError, PlanRequest


def _check_request(req: PlanRequest) -> None:
    """Reject values no plan can honour, naming the field and the value."""
    if not 0 < req.gpu_memory_utilization <= 1:
        raise PlanningError(
            f"gpu_memory_utilization must be in (0, 1], got {req.gpu_memory_utilization}",
            fixes=("use a fraction such as 0.9",),
        )
    if req.shape.gpus_per_node < 1:
        raise PlanningError(f"gpus_per_node must be at least 1, got {req.shape.gpus_per_node}")
    if req.shape.gpu_memory_bytes <= 0:
        raise PlanningError(f"GPU memory must be more than 0 bytes, got {req.shape.gpu_memory_bytes}")
    if req.nodes is not None and req.nodes < 1:
        raise PlanningError(f"nodes must be at least 1, got {req.nodes}")
    if req.max_nodes is not None and req.max_nodes < 1:
        raise PlanningError(f"max_nodes must be at least 1, got {req.max_nodes}")
    if req.nodes is not None and req.max_nodes is not None and req.nodes > req.max_nodes:
        raise PlanningError(
            f"nodes {req.nodes} is more than max_nodes {req.max_nodes}",
            fixes=(f"raise max_nodes to {req.nodes}", f"pin at most {nodes_text(req.max_nodes)}"),
        )


def _max_model_len(req: PlanRequest) -> int:
    """The requested context, or the model's full one; never beyond what the model supports."""
    context = req.model.max_context
    if req.max_model_len is None:
        return context
    if req.max_model_len < 1:
        raise PlanningError(f"max_model_len must be at least 1, got {req.max_model_len}")
    if req.max_model_len > context:
        raise PlanningError(
            f"max_model_len {req.max_model_len} exceeds the {context}-token context of {req.model.name}",
            fixes=(f"set max_model_len to at most {context}",),
        )
    return req.max_model_len


def _node_counts(req: PlanRequest, tp: int, layer_limit: int) -> range:
    """The node counts to try, ascending; raises when even the smallest makes more stages than layers."""
    gpus = req.shape.gpus_per_node
    layers = req.model.num_layers
    smallest = req.nodes if req.nodes is not None else 1
    if smallest > layer_limit:
        pp = pipeline_parallel_size(smallest, gpus, tp)
        fixes = (f"pin at most {nodes_text(layer_limit)}",) if layer_limit >= 1 else ()
        raise PlanningError(
            f"{nodes_text(smallest)} of {gpus} GPUs at tensor parallel size {tp}"
            f" make pipeline parallel size {pp}, more than the {layers} layers of {req.model.name}"
            " (every stage needs at least one layer)",
            fixes=fixes,
        )
    if req.nodes is not None:
        return range(req.nodes, req.nodes + 1)
    return range(1, min(req.max_nodes or MAX_NODES, layer_limit) + 1)


def _dtype_warnings(req: PlanRequest, dtype: Dtype) -> list[str]:
    native = req.model.native_dtype
    if native == "fp8" and dtype != "fp8":
        return [
            f"{req.model.name} is an fp8 checkpoint: serving it in {dtype} takes 2 bytes per weight"
            f" and needs a {dtype} copy of the checkpoint"
            " (vLLM keeps the checkpoint's fp8 quantisation otherwise)"
        ]
    if dtype == "fp8" and native != "fp8":
        return [
            f"{req.model.name} is a {native} checkpoint: fp8 means quantising its weights when loading"
            " (vLLM --quantization fp8)"
        ]
    return []


def _tp_warnings(req: PlanRequest, choice: TensorParallelChoice) -> list[str]:
    if not choice.rejected:
        return []
    gpus = req.shape.gpus_per_node
    return [
        f"tensor parallel size {choice.size}, not {gpus} ({'; '.join(choice.rejected)});"
        f" each node's {gpus} GPUs run as {gpus // choice.size} pipeline stages of tp {choice.size}"
    ]


def _link_warnings(req: PlanRequest, tp: int) -> list[str]:
    """Tensor parallelism all-reduces every layer; over PCIe alone that is slow (vLLM advises PP there)."""
    product = find_gpu_product(req.shape.gpu_product) if req.shape.gpu_product else None
    if tp == 1 or product is None or product.nvlink:
        return []
    return [
        f"{product.name} GPUs have no NVLink: tensor parallel size {tp} all-reduces over PCIe;"
        " expect lower throughput than on NVLink GPUs"
    ]


def _node_warnings(req: PlanRequest, dtype: Dtype, max_model_len: int, chosen: Layout) -> list[str]:
    if req.nodes is not None and req.nodes > 1:
        fewer = fewest_fitting(
            req.model, req.shape, dtype, req.gpu_memory_utilization, max_model_len, range(1, req.nodes)
        )
        if fewer is not None:
            return [f"pinned to {req.nodes} nodes; {fewer.nodes} would suffice"]
    if req.nodes is None and req.max_nodes is not None and chosen.nodes < req.max_nodes:
        return [f"uses {chosen.nodes} of at most {req.max_nodes} nodes: {chosen.nodes} already fit"]
    return []


def _plan(
    req: PlanRequest, dtype: Dtype, max_model_len: int, choice: TensorParallelChoice, chosen: Layout
) -> Plan:
    tokens = kv_cache_tokens(chosen.budget)
    warnings = (
        *_tp_warnings(req, choice),
        *_link_warnings(req, chosen.tensor_parallel_size),
        *_dtype_warnings(req, dtype),
        *_node_warnings(req, dtype, max_model_len, chosen),
    )
    return Plan(
        model=req.model.name,
        hf_id=req.model.hf_id,
        nodes=chosen.nodes,
        gpus_per_node=req.shape.gpus_per_node,
        tensor_parallel_size=chosen.tensor_parallel_size,
        pipeline_parallel_size=chosen.pipeline_parallel_size,
        dtype=dtype,
        max_model_len=max_model_len,
        gpu_memory_utilization=req.gpu_memory_utilization,
        memory=chosen.budget,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=round(tokens / max_model_len, 2),
        instance_type=req.shape.instance_type,
        gpu_product=req.shape.gpu_product,
        warnings=warnings,
        arithmetic=arithmetic(req.model, req.shape, dtype, max_model_len, req.gpu_memory_utilization, chosen),
    )


def make_plan(req: PlanRequest, *, instances: Sequence[InstanceType] = INSTANCE_TYPES) -> Plan:
    """Plan `req`, or raise PlanningError with what was needed, what was available and fixes that work.

    `instances` is the catalog the fixes may suggest other instance types from.
    """
    _check_request(req)
    model, shape = req.model, req.shape
    dtype: Dtype = req.dtype or model.native_dtype
    max_model_len = _max_model_len(req)
    choice = choose_tensor_parallel(model, shape.gpus_per_node, dtype)
    tp = choice.size
    counts = _node_counts(req, tp, max_nodes_for_layers(model, shape.gpus_per_node, tp))
    for nodes in counts:
        candidate = layout(model, shape, dtype, req.gpu_memory_utilization, tp, nodes)
        if fits(candidate.budget, max_model_len):
            return _plan(req, dtype, max_model_len, choice, candidate)
    largest = layout(model, shape, dtype, req.gpu_memory_utilization, tp, counts[-1])
    raise no_fit_error(Attempt(req, dtype, max_model_len, counts, largest), instances)
