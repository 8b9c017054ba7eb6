"""The plan's arithmetic as lines a person can check by hand (`phalanx plan` prints them).

Each line names its inputs and its result, so a surprising plan can be traced to the number behind it.
"""

from __future__ import annotations

from phalanx.planner.layout import Layout
from phalanx.planner.memory import (
    ACTIVATION_BUFFERS,
    ACTIVATION_DTYPE_BYTES,
    CUDA_GRAPH_BYTES,
    EDGE_DTYPE_BYTES,
    KV_DTYPE_BYTES,
    MAX_NUM_BATCHED_TOKENS,
    NON_TORCH_BYTES,
    bytes_per_param,
    edge_params,
    kv_cache_tokens,
    kv_heads_per_gpu,
    sequence_kv_bytes,
    stage_decoder_params,
    stage_layers,
)
from phalanx.planner.types import Dtype, GpuShape, ModelArchitecture
from phalanx.planner.units import format_bytes, format_gib


def nodes_text(nodes: int) -> str:
    """ "1 node", "2 nodes"."""
    return f"{nodes} node" if nodes == 1 else f"{nodes} nodes"


def describe_shape(shape: GpuShape) -> str:
    """ "Standard_ND96isr_H100_v5 (8 x H100-80GB, 80.0 GiB each)" or "8 x GPU, 80.0 GiB each"."""
    gpus = f"{shape.gpus_per_node} x {shape.gpu_product or 'GPU'}, {format_gib(shape.gpu_memory_bytes)} each"
    return f"{shape.instance_type} ({gpus})" if shape.instance_type else gpus


def parallelism_line(shape: GpuShape, chosen: Layout, num_layers: int) -> str:
    tp, pp = chosen.tensor_parallel_size, chosen.pipeline_parallel_size
    return (
        f"parallelism: {nodes_text(chosen.nodes)} x {shape.gpus_per_node} GPUs = {tp * pp} GPUs"
        f" = tensor {tp} x pipeline {pp};"
        f" heaviest stage {stage_layers(num_layers, pp)} of {num_layers} layers"
    )


def weights_line(model: ModelArchitecture, dtype: Dtype, chosen: Layout) -> str:
    tp, pp = chosen.tensor_parallel_size, chosen.pipeline_parallel_size
    edge = edge_params(model, pp)
    matrices = edge // (model.vocab_size * model.hidden_size)
    decoder = stage_decoder_params(model, pp)
    layers = stage_layers(model.num_layers, pp)
    return (
        f"weights per GPU = ({matrices} x {model.vocab_size} vocab x {model.hidden_size} hidden = {edge:,}"
        f" embedding/LM-head params x {EDGE_DTYPE_BYTES} B + {layers} layers' {decoder:,} params"
        f" x {bytes_per_param(dtype)} B ({dtype})) / tp {tp} = {chosen.budget.weights:,} B"
        f" ({format_bytes(chosen.budget.weights)})"
    )


def kv_line(model: ModelArchitecture, chosen: Layout) -> str:
    tp, pp = chosen.tensor_parallel_size, chosen.pipeline_parallel_size
    layers = stage_layers(model.num_layers, pp)
    per_token = chosen.budget.kv_bytes_per_token
    if model.mla is not None:
        latent = model.mla.kv_lora_rank + model.mla.qk_rope_head_dim
        return (
            f"KV per token per GPU = {layers} layers x ({model.mla.kv_lora_rank} latent"
            f" + {model.mla.qk_rope_head_dim} rope = {latent}) x {KV_DTYPE_BYTES} B"
            f" (MLA latent, the same on every TP rank) = {per_token:,} B ({format_bytes(per_token)})"
        )
    heads = kv_heads_per_gpu(model, tp)
    how = (
        f"{model.num_kv_heads} KV heads replicated over tp {tp}"
        if tp > model.num_kv_heads
        else f"{model.num_kv_heads} KV heads / tp {tp}"
    )
    return (
        f"KV per token per GPU = 2 (K and V) x {layers} layers x {heads} KV head(s) ({how})"
        f" x {model.head_dim} head dim x {KV_DTYPE_BYTES} B = {per_token:,} B ({format_bytes(per_token)})"
    )


def overhead_line(model: ModelArchitecture, overhead: int) -> str:
    return (
        f"runtime overhead per GPU = {format_bytes(NON_TORCH_BYTES)} CUDA context/NCCL"
        f" + {format_bytes(CUDA_GRAPH_BYTES)} CUDA graphs + activations {MAX_NUM_BATCHED_TOKENS} tokens"
        f" x {model.hidden_size} hidden x {ACTIVATION_DTYPE_BYTES} B x {ACTIVATION_BUFFERS} buffers"
        f" = {overhead:,} B ({format_bytes(overhead)})"
    )


def arithmetic(
    model: ModelArchitecture,
    shape: GpuShape,
    dtype: Dtype,
    max_model_len: int,
    gpu_memory_utilization: float,
    chosen: Layout,
) -> tuple[str, ...]:
    """The lines from shape to concurrency for a layout that fits."""
    budget = chosen.budget
    tokens = kv_cache_tokens(budget)
    sequence = sequence_kv_bytes(budget, max_model_len)
    return (
        f"shape: {describe_shape(shape)}",
        parallelism_line(shape, chosen, model.num_layers),
        weights_line(model, dtype, chosen),
        kv_line(model, chosen),
        f"usable per GPU = {format_gib(budget.gpu_total)} x {gpu_memory_utilization}"
        f" = {budget.usable:,} B ({format_gib(budget.usable)})",
        overhead_line(model, budget.runtime_overhead),
        f"KV cache budget per GPU = usable - weights - overhead = {format_gib(budget.usable)}"
        f" - {format_gib(budget.weights)} - {format_gib(budget.runtime_overhead)}"
        f" = {budget.kv_cache:,} B ({format_gib(budget.kv_cache)})",
        f"one {max_model_len}-token sequence needs {max_model_len} x {budget.kv_bytes_per_token:,} B"
        f" = {format_gib(sequence)} <= {format_gib(budget.kv_cache)}",
        f"KV cache tokens = {budget.kv_cache:,} B // {budget.kv_bytes_per_token:,} B = {tokens:,}",
        f"max concurrent sequences = {tokens:,} / {max_model_len} = {round(tokens / max_model_len, 2)}",
    )
