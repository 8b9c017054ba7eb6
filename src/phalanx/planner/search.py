"""`make_plan`: the fewest whole nodes of a shape that serve a model, laid out for the most tokens per node.

Rules: every pod takes a whole node; on one node the GPUs split into data-parallel replicas of tp GPUs or into
pipeline stages, across nodes TP stays inside a node and PP spans them (see `layout.py`); a plan must hold
weights, runtime overhead and at least one full `max_model_len` sequence on every GPU. Pinned sizes (nodes,
tensor or data parallel) are used exactly as given, never silently changed (unlike KAITO #1956); otherwise
the fewest nodes from 1 to `max_nodes` (or 64) win, and at that count the layout with the highest estimated
decode throughput per node (`throughput.py`). Nothing that does not fit is ever returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.planner.catalog.gpus import INSTANCE_TYPES, find_gpu_product
from phalanx.planner.explain import arithmetic, layout_lines, nodes_text
from phalanx.planner.fixes import Attempt, no_fit_error
from phalanx.planner.layout import MAX_NODES, Layout, Setting, choose, fewest_fitting, node_sizes, widest
from phalanx.planner.memory import kv_cache_tokens
from phalanx.planner.parallelism import (
    choose_tensor_parallel,
    divisors_descending,
    max_nodes_for_layers,
    pipeline_parallel_size,
    tp_obstacle,
)
from phalanx.planner.throughput import REFERENCE_CONTEXT
from phalanx.planner.types import (
    REQUESTABLE_DTYPES,
    Dtype,
    InstanceType,
    LayoutOption,
    Plan,
    PlanningError,
    PlanRequest,
)


def _check_request(req: PlanRequest) -> None:
    """Reject values no plan can honour, naming the field and the value."""
    if not 0 < req.gpu_memory_utilization <= 1:
        raise PlanningError(
            f"gpu_memory_utilization must be in (0, 1], got {req.gpu_memory_utilization}",
            fixes=("use a fraction such as 0.9",),
            field="gpu_memory_utilization",
        )
    if req.shape.gpus_per_node < 1:
        raise PlanningError(f"gpus_per_node must be at least 1, got {req.shape.gpus_per_node}")
    if req.shape.gpu_memory_bytes <= 0:
        raise PlanningError(f"GPU memory must be more than 0 bytes, got {req.shape.gpu_memory_bytes}")
    if req.nodes is not None and req.nodes < 1:
        raise PlanningError(f"nodes must be at least 1, got {req.nodes}", field="nodes")
    if req.max_nodes is not None and req.max_nodes < 1:
        raise PlanningError(f"max_nodes must be at least 1, got {req.max_nodes}", field="max_nodes")
    if req.nodes is not None and req.max_nodes is not None and req.nodes > req.max_nodes:
        raise PlanningError(
            f"nodes {req.nodes} is more than max_nodes {req.max_nodes}",
            fixes=(f"raise max_nodes to {req.nodes}", f"pin at most {nodes_text(req.max_nodes)}"),
            field="nodes",
        )
    _check_pinned_layout(req)


def _check_pinned_layout(req: PlanRequest) -> None:
    """A pinned tensor or data parallel size must split the node's GPUs evenly (and DP stays in one node)."""
    gpus, tp, dp = req.shape.gpus_per_node, req.tensor_parallel_size, req.data_parallel_size
    divisors = ", ".join(str(d) for d in reversed(divisors_descending(gpus)))
    if tp is not None and (tp < 1 or gpus % tp):
        raise PlanningError(
            f"tensor_parallel_size {tp} does not divide the {gpus} GPUs of a node"
            " (tensor parallelism stays inside one node; nodes become pipeline stages)",
            fixes=(f"use one of {divisors}",),
            field="tensor_parallel_size",
        )
    if dp is None:
        return
    if dp < 1 or gpus % dp:
        raise PlanningError(
            f"data_parallel_size {dp} does not divide the {gpus} GPUs of a node",
            fixes=(f"use one of {divisors}",),
            field="data_parallel_size",
        )
    if dp > 1 and req.nodes is not None and req.nodes > 1:
        raise PlanningError(
            f"data_parallel_size {dp} needs the model to fit one node, but nodes is pinned to {req.nodes}:"
            " data-parallel replicas share one pod's GPUs",
            fixes=("set data_parallel_size to 1", "for more copies of a multi-node model raise replicas"),
            field="data_parallel_size",
        )
    if dp > 1 and tp is not None and dp * tp != gpus:
        raise PlanningError(
            f"data_parallel_size {dp} x tensor_parallel_size {tp} = {dp * tp} GPUs, but a node has {gpus}:"
            " the replicas of one pod use all of its GPUs",
            fixes=(f"set data_parallel_size to {gpus // tp}", f"set tensor_parallel_size to {gpus // dp}"),
            field="data_parallel_size",
        )


def _dtype(req: PlanRequest) -> Dtype:
    """The requested dtype or the checkpoint's; mxfp4 exists only as a checkpoint's own format."""
    native = req.model.native_dtype
    dtype: Dtype = req.dtype or native
    if dtype == "mxfp4" and native != "mxfp4":
        raise PlanningError(
            f"{req.model.name} is a {native} checkpoint; mxfp4 is only served from mxfp4 checkpoints",
            fixes=(f"set dtype to one of {', '.join(REQUESTABLE_DTYPES)}",),
            field="dtype",
        )
    if native == "mxfp4" and dtype == "fp8":
        raise PlanningError(
            f"{req.model.name} is an mxfp4 checkpoint: vLLM cannot re-quantise it to fp8",
            fixes=(
                "leave dtype unset to serve its mxfp4 experts",
                "set dtype to bf16 and serve a bf16 copy of the checkpoint",
            ),
            field="dtype",
        )
    return dtype


def _max_model_len(req: PlanRequest) -> int:
    """The requested context, or the model's full one; never beyond what the model supports."""
    context = req.model.max_context
    if req.max_model_len is None:
        return context
    if req.max_model_len < 1:
        raise PlanningError(
            f"max_model_len must be at least 1, got {req.max_model_len}", field="max_model_len"
        )
    if req.max_model_len > context:
        raise PlanningError(
            f"max_model_len {req.max_model_len} exceeds the {context}-token context of {req.model.name}",
            fixes=(f"set max_model_len to at most {context}",),
            field="max_model_len",
        )
    return req.max_model_len


def _check_pinned_tp(req: PlanRequest, dtype: Dtype) -> None:
    tp = req.tensor_parallel_size
    obstacle = tp_obstacle(req.model, tp, dtype) if tp is not None else None
    if tp is not None and obstacle is not None:
        allowed = choose_tensor_parallel(req.model, req.shape.gpus_per_node, dtype).size
        raise PlanningError(
            f"{req.model.name} cannot be split over tensor_parallel_size {tp}: {obstacle}",
            fixes=(f"use tensor_parallel_size {allowed} or less, dividing the node's GPUs",),
            field="tensor_parallel_size",
        )


def _check_pinned_dp(req: PlanRequest, setting: Setting) -> None:
    """A pinned data parallel size leaves tp = gpus / dp, which the model must allow."""
    dp, gpus = req.data_parallel_size, req.shape.gpus_per_node
    if dp is None or dp == 1 or node_sizes(setting, 1)[0]:
        return
    tp = gpus // dp
    obstacle = tp_obstacle(req.model, tp, setting.dtype)
    allowed = [
        gpus // size
        for size in divisors_descending(gpus)
        if tp_obstacle(req.model, size, setting.dtype) is None
    ]
    raise PlanningError(
        f"data_parallel_size {dp} leaves {tp} GPUs per replica, and {req.model.name} cannot be split over"
        f" tensor parallel size {tp}: {obstacle}",
        fixes=(f"set data_parallel_size to one of {', '.join(str(d) for d in sorted(allowed))}",),
        field="data_parallel_size",
    )


def _node_counts(req: PlanRequest, dtype: Dtype) -> range:
    """The node counts to try, ascending; raises when even the smallest makes more stages than layers."""
    if req.data_parallel_size is not None and req.data_parallel_size > 1:
        return range(1, 2)  # data-parallel replicas live in one node
    gpus = req.shape.gpus_per_node
    tp = req.tensor_parallel_size or choose_tensor_parallel(req.model, gpus, dtype).size
    layer_limit = max_nodes_for_layers(req.model, gpus, tp)
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
            field="nodes" if req.nodes is not None else None,
        )
    if req.nodes is not None:
        return range(req.nodes, req.nodes + 1)
    return range(1, min(req.max_nodes or MAX_NODES, layer_limit) + 1)


def _dtype_warnings(req: PlanRequest, dtype: Dtype) -> list[str]:
    native = req.model.native_dtype
    if native in ("fp8", "mxfp4") and dtype != native:
        weights = "weight" if native == "fp8" else "expert weight"
        return [
            f"{req.model.name} is an {native} checkpoint: serving it in {dtype} takes 2 bytes per {weights}"
            f" and needs a {dtype} copy of the checkpoint"
            f" (vLLM keeps the checkpoint's {native} quantisation otherwise)"
        ]
    if dtype == "fp8" and native != "fp8":
        return [
            f"{req.model.name} is a {native} checkpoint: fp8 means quantising its weights when loading"
            " (vLLM --quantization fp8_per_tensor, SGLang --quantization fp8)"
        ]
    return []


def _tp_warnings(req: PlanRequest, dtype: Dtype, chosen: Layout) -> list[str]:
    """A node split into pipeline stages because the model cannot be split over all of its GPUs."""
    gpus, tp = req.shape.gpus_per_node, chosen.tensor_parallel_size
    stages_per_node = chosen.pipeline_parallel_size // chosen.nodes
    if chosen.data_parallel_size > 1 or stages_per_node == 1:
        return []
    allowed = choose_tensor_parallel(req.model, gpus, dtype)
    if tp != allowed.size or not allowed.rejected:
        return []  # a wider group was possible: the throughput model preferred stages (see the layouts)
    rejected = [f"tp {size}: {why}" for size, why in allowed.rejected]
    return [
        f"tensor parallel size {tp}, not {gpus} ({'; '.join(rejected)});"
        f" each node's {gpus} GPUs run as {stages_per_node} pipeline stages of tp {tp}"
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


def _node_warnings(req: PlanRequest, setting: Setting, chosen: Layout) -> list[str]:
    if req.nodes is not None and req.nodes > 1:
        fewer = fewest_fitting(setting, range(1, req.nodes))
        if fewer is not None:
            return [f"pinned to {req.nodes} nodes; {fewer.nodes} would suffice"]
    if req.nodes is None and req.max_nodes is not None and chosen.nodes < req.max_nodes:
        return [f"uses {chosen.nodes} of at most {req.max_nodes} nodes: {chosen.nodes} already fit"]
    return []


# How much more decode throughput per node one more node must promise before a plan says so: well past
# what the throughput model can tell apart (its ties are within 5%).
MORE_NODES_GAIN = 1.5


def _starved_warnings(req: PlanRequest, setting: Setting, chosen: Layout) -> list[str]:
    """The fewest nodes that fit can leave so little KV cache that one more node serves far more per node."""
    if req.nodes is not None or chosen.throughput is None:
        return []
    wider = choose(setting, chosen.nodes + 1).chosen
    if wider is None or wider.throughput is None:
        return []
    now, then = chosen.throughput.tokens_per_second_per_node, wider.throughput.tokens_per_second_per_node
    if then < MORE_NODES_GAIN * now:
        return []
    more, verb = chosen.nodes + 1, "leaves" if chosen.nodes == 1 else "leave"
    return [
        f"{nodes_text(chosen.nodes)} {verb} KV cache for {chosen.throughput.batch} sequences of"
        f" {min(REFERENCE_CONTEXT, setting.max_model_len)} tokens per replica:"
        f" {nodes_text(more)} would decode"
        f" about {then / now:.1f}x the tokens per node ({then:,.0f} vs {now:,.0f} a second, estimated);"
        f" pin {nodes_text(more)} if throughput matters more than the node count"
    ]


def _plan(req: PlanRequest, setting: Setting, chosen: Layout, options: tuple[LayoutOption, ...]) -> Plan:
    max_model_len, dtype = setting.max_model_len, setting.dtype
    tokens = kv_cache_tokens(chosen.budget, max_model_len)
    warnings = (
        *_tp_warnings(req, dtype, chosen),
        *_link_warnings(req, chosen.tensor_parallel_size),
        *_dtype_warnings(req, dtype),
        *_node_warnings(req, setting, chosen),
        *_starved_warnings(req, setting, chosen),
    )
    lines = arithmetic(req.model, req.shape, dtype, max_model_len, chosen)
    return Plan(
        model=req.model.name,
        hf_id=req.model.hf_id,
        nodes=chosen.nodes,
        gpus_per_node=req.shape.gpus_per_node,
        tensor_parallel_size=chosen.tensor_parallel_size,
        pipeline_parallel_size=chosen.pipeline_parallel_size,
        dtype=dtype,
        max_model_len=max_model_len,
        gpu_memory_utilization=chosen.budget.fraction,
        memory=chosen.budget,
        kv_cache_tokens=tokens,
        max_concurrent_sequences=round(tokens / max_model_len, 2),
        instance_type=req.shape.instance_type,
        gpu_product=req.shape.gpu_product,
        warnings=warnings,
        arithmetic=(*lines, *layout_lines(setting, chosen, options)),
        data_parallel_size=chosen.data_parallel_size,
        throughput=chosen.throughput,
        layouts=options,
        checkpoint_format=req.model.checkpoint_format,
    )


def make_plan(req: PlanRequest, *, instances: Sequence[InstanceType] = INSTANCE_TYPES) -> Plan:
    """Plan `req`, or raise PlanningError with what was needed, what was available and fixes that work.

    `instances` is the catalog the fixes may suggest other instance types from.
    """
    _check_request(req)
    dtype = _dtype(req)
    setting = Setting(
        model=req.model,
        shape=req.shape,
        dtype=dtype,
        gpu_memory_utilization=req.gpu_memory_utilization,
        max_model_len=_max_model_len(req),
        tensor_parallel_size=req.tensor_parallel_size,
        data_parallel_size=req.data_parallel_size,
        memory_model=req.memory_model,
    )
    _check_pinned_tp(req, dtype)
    _check_pinned_dp(req, setting)
    counts = _node_counts(req, dtype)
    for nodes in counts:
        choice = choose(setting, nodes)
        if choice.chosen is not None:
            return _plan(req, setting, choice.chosen, choice.options)
    largest = widest(setting, counts[-1])
    assert largest is not None, "every node count tried has a candidate layout"
    raise no_fit_error(Attempt(req, setting, counts, largest), instances)
