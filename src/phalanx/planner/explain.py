"""The plan's arithmetic as lines a person can check by hand (`phalanx plan` prints them).

Each line names its inputs and its result, so a surprising plan can be traced to the number behind it.
"""

from __future__ import annotations

from phalanx.planner.layout import TIE_TOLERANCE, Layout, Setting
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
    expert_bytes_per_param,
    kv_cache_tokens,
    kv_heads_per_gpu,
    sequence_kv_bytes,
    stage_decoder_params,
    stage_expert_fraction,
    stage_full_attention_layers,
    stage_layers,
)
from phalanx.planner.throughput import REFERENCE_CONTEXT, gpu_of, max_num_seqs
from phalanx.planner.types import Dtype, GpuShape, LayoutOption, MemoryBudget, ModelArchitecture, Throughput
from phalanx.planner.units import format_bytes, format_gib


def nodes_text(nodes: int) -> str:
    """ "1 node", "2 nodes"."""
    return f"{nodes} node" if nodes == 1 else f"{nodes} nodes"


def layout_text(chosen: Layout) -> str:
    """ "DP 4 x TP 2", "TP 8 x PP 2": the sizes above 1 (TP always)."""
    option = LayoutOption(
        chosen.data_parallel_size, chosen.tensor_parallel_size, chosen.pipeline_parallel_size
    )
    return option.label


def describe_shape(shape: GpuShape) -> str:
    """ "Standard_ND96isr_H100_v5 (8 x H100-80GB, 80.0 GiB each)" or "8 x GPU, 80.0 GiB each"."""
    gpus = f"{shape.gpus_per_node} x {shape.gpu_product or 'GPU'}, {format_gib(shape.gpu_memory_bytes)} each"
    return f"{shape.instance_type} ({gpus})" if shape.instance_type else gpus


def parallelism_line(shape: GpuShape, chosen: Layout, num_layers: int) -> str:
    dp, tp, pp = chosen.data_parallel_size, chosen.tensor_parallel_size, chosen.pipeline_parallel_size
    replicas = f"data {dp} x " if dp > 1 else ""
    return (
        f"parallelism: {nodes_text(chosen.nodes)} x {shape.gpus_per_node} GPUs = {dp * tp * pp} GPUs"
        f" = {replicas}tensor {tp} x pipeline {pp};"
        f" heaviest stage {stage_layers(num_layers, pp)} of {num_layers} layers"
    )


def _decoder_terms(model: ModelArchitecture, dtype: Dtype, pp: int) -> str:
    """The stage's decoder parameters times their bytes: one term, or two when experts are mxfp4."""
    layers = stage_layers(model.num_layers, pp)
    params = stage_decoder_params(model, pp)
    if dtype != "mxfp4" or model.moe is None:
        return f"{layers} layers' {params:,} params x {bytes_per_param(dtype)} B ({dtype})"
    share = stage_expert_fraction(model, "fp8")  # the experts' share of parameters (1 byte each in fp8)
    experts = round(params * share)
    per_expert = float(expert_bytes_per_param(dtype))
    return (
        f"{layers} layers' {params - experts:,} params x {bytes_per_param(dtype)} B"
        f" + {experts:,} expert params x {per_expert} B (mxfp4)"
    )


def weights_line(model: ModelArchitecture, dtype: Dtype, chosen: Layout) -> str:
    tp, pp = chosen.tensor_parallel_size, chosen.pipeline_parallel_size
    edge = edge_params(model, pp)
    matrices = edge // (model.vocab_size * model.hidden_size)
    extra = (
        f" + {model.extra_params:,} vision-encoder params x {EDGE_DTYPE_BYTES} B"
        if model.extra_params
        else ""
    )
    return (
        f"weights per GPU = ({matrices} x {model.vocab_size} vocab x {model.hidden_size} hidden = {edge:,}"
        f" embedding/LM-head params x {EDGE_DTYPE_BYTES} B{extra} + {_decoder_terms(model, dtype, pp)})"
        f" / tp {tp} = {chosen.budget.weights:,} B ({format_bytes(chosen.budget.weights)})"
    )


def kv_line(model: ModelArchitecture, chosen: Layout) -> str:
    tp, pp = chosen.tensor_parallel_size, chosen.pipeline_parallel_size
    layers = stage_full_attention_layers(model, pp)
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
    full = "full-attention " if chosen.budget.window_kv_bytes_per_token else ""
    return (
        f"KV per token per GPU = 2 (K and V) x {layers} {full}layers x {heads} KV head(s) ({how})"
        f" x {model.head_dim} head dim x {KV_DTYPE_BYTES} B = {per_token:,} B ({format_bytes(per_token)})"
    )


def window_line(model: ModelArchitecture, chosen: Layout) -> str:
    """Sliding-window layers: what they add per token, up to the window."""
    budget = chosen.budget
    sliding = stage_layers(model.num_layers, chosen.pipeline_parallel_size) - stage_full_attention_layers(
        model, chosen.pipeline_parallel_size
    )
    return (
        f"sliding-window KV per token per GPU = {sliding} layers x the same per layer"
        f" = {budget.window_kv_bytes_per_token:,} B,"
        f" for the last {budget.sliding_window} tokens of a sequence only"
    )


def overhead_line(model: ModelArchitecture, overhead: int) -> str:
    return (
        f"runtime overhead per GPU = {format_bytes(NON_TORCH_BYTES)} CUDA context/NCCL"
        f" + {format_bytes(CUDA_GRAPH_BYTES)} CUDA graphs + activations {MAX_NUM_BATCHED_TOKENS} tokens"
        f" x {model.hidden_size} hidden x {ACTIVATION_DTYPE_BYTES} B x {ACTIVATION_BUFFERS} buffers"
        f" = {overhead:,} B ({format_bytes(overhead)})"
    )


def sequence_line(max_model_len: int, chosen: Layout) -> str:
    budget = chosen.budget
    sequence = sequence_kv_bytes(budget, max_model_len)
    if not budget.window_kv_bytes_per_token:
        how = f"{max_model_len} x {budget.kv_bytes_per_token:,} B"
    else:
        window = min(max_model_len, budget.sliding_window)
        how = (
            f"{max_model_len} x {budget.kv_bytes_per_token:,} B"
            f" + {window} x {budget.window_kv_bytes_per_token:,} B"
        )
    return (
        f"one {max_model_len}-token sequence needs {how} = {format_gib(sequence)}"
        f" <= {format_gib(budget.kv_cache)}"
    )


def tokens_line(max_model_len: int, chosen: Layout) -> str:
    budget = chosen.budget
    tokens = kv_cache_tokens(budget, max_model_len)
    if not budget.window_kv_bytes_per_token:
        return f"KV cache tokens = {budget.kv_cache:,} B // {budget.kv_bytes_per_token:,} B = {tokens:,}"
    sequence = sequence_kv_bytes(budget, max_model_len)
    return (
        f"KV cache tokens = {budget.kv_cache:,} B x {max_model_len}"
        f" // {sequence:,} B per full-length sequence"
        f" = {tokens:,}"
    )


def budget_lines(model: ModelArchitecture, budget: MemoryBudget) -> tuple[str, ...]:
    """From the GPU's memory to the KV cache budget, in the engine's own memory model."""
    if budget.memory_model == "sglang":
        return (
            f"weights + KV per GPU = {format_gib(budget.gpu_total)} x {budget.fraction} (SGLang"
            f" --mem-fraction-static; SGLang keeps the rest for its runtime)"
            f" = {budget.usable:,} B ({format_gib(budget.usable)})",
            f"KV cache budget per GPU = {format_gib(budget.usable)} - weights {format_gib(budget.weights)}"
            f" = {budget.kv_cache:,} B ({format_gib(budget.kv_cache)})",
        )
    return (
        f"usable per GPU = {format_gib(budget.gpu_total)} x {budget.fraction}"
        f" = {budget.usable:,} B ({format_gib(budget.usable)})",
        overhead_line(model, budget.runtime_overhead),
        f"KV cache budget per GPU = usable - weights - overhead = {format_gib(budget.usable)}"
        f" - {format_gib(budget.weights)} - {format_gib(budget.runtime_overhead)}"
        f" = {budget.kv_cache:,} B ({format_gib(budget.kv_cache)})",
    )


def arithmetic(
    model: ModelArchitecture,
    shape: GpuShape,
    dtype: Dtype,
    max_model_len: int,
    chosen: Layout,
) -> tuple[str, ...]:
    """The lines from shape to concurrency for a layout that fits (per engine replica)."""
    budget = chosen.budget
    tokens = kv_cache_tokens(budget, max_model_len)
    window = (window_line(model, chosen),) if budget.window_kv_bytes_per_token else ()
    return (
        f"shape: {describe_shape(shape)}",
        parallelism_line(shape, chosen, model.num_layers),
        weights_line(model, dtype, chosen),
        kv_line(model, chosen),
        *window,
        *budget_lines(model, budget),
        sequence_line(max_model_len, chosen),
        tokens_line(max_model_len, chosen),
        f"max concurrent sequences = {tokens:,} / {max_model_len} = {round(tokens / max_model_len, 2)}"
        + (" per replica" if chosen.data_parallel_size > 1 else ""),
    )


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def throughput_text(speed: Throughput, shape: GpuShape) -> str:
    """One layout's estimate: batch, bytes read per GPU, step time and tokens per second per node."""
    bandwidth = gpu_of(shape).memory_bandwidth
    reduce = f" + all-reduce {speed.allreduce_seconds * 1e3:.1f} ms" if speed.allreduce_seconds else ""
    return (
        f"batch {speed.batch} per replica,"
        f" ({_gb(speed.weight_bytes_read)} weights + {_gb(speed.kv_bytes_read)} KV)"
        f" / {bandwidth / 1e9:,.0f} GB/s = {speed.memory_seconds * 1e3:.1f} ms{reduce}"
        f" per micro-batch -> {speed.tokens_per_second_per_node:,.0f} tokens/s per node"
    )


def _model_line(setting: Setting) -> str:
    gpu = gpu_of(setting.shape)
    link = "NVLink" if gpu.nvlink else "PCIe"
    known = "" if gpu.name != "unknown" else " (GPU not in the catalog: assumed)"
    return (
        "layouts weighed by estimated decode throughput: sequences of"
        f" {min(REFERENCE_CONTEXT, setting.max_model_len)} tokens in flight,"
        f" at most {max_num_seqs(setting.shape)} per replica, weights and KV read at"
        f" {gpu.memory_bandwidth / 1e9:,.0f} GB/s{known}, all-reduce over {link} at"
        f" {gpu.link_bandwidth / 1e9:,.0f} GB/s (docs/planner.md has the model)"
    )


def _verdict(chosen: Layout, options: tuple[LayoutOption, ...]) -> str:
    label = layout_text(chosen)
    runners = [o for o in options if o.throughput is not None][1:]
    if not runners:
        return f"chosen: {label}, the only layout that fits"
    assert chosen.throughput is not None and runners[0].throughput is not None
    best, second = (
        chosen.throughput.tokens_per_second_per_node,
        runners[0].throughput.tokens_per_second_per_node,
    )
    if chosen.nodes == 1 and chosen.data_parallel_size == 1 and chosen.pipeline_parallel_size > 1:
        return f"chosen: {label}, the widest tensor parallel group that fits when the node splits into stages"
    if second > best:
        return (
            f"chosen: {label}: within {TIE_TOLERANCE:.0%} of {runners[0].label}'s estimate, a tie the larger"
            " tensor parallel group wins (faster per sequence, more KV cache per replica)"
        )
    gain = (best / second - 1) * 100 if second else 0.0
    return f"chosen: {label}, {gain:.0f}% more tokens/s per node than {runners[0].label}, the next best"


def layout_lines(setting: Setting, chosen: Layout, options: tuple[LayoutOption, ...]) -> tuple[str, ...]:
    """Every layout weighed at the chosen node count, its estimate or why it is ruled out, and the verdict."""
    pins = [
        f"{name} pinned to {value}"
        for name, value in (
            ("tensor parallel size", setting.tensor_parallel_size),
            ("data parallel size", setting.data_parallel_size),
        )
        if value is not None
    ]
    lines = [_model_line(setting) + (f"; {', '.join(pins)}" if pins else "")]
    for option in options:
        if option.throughput is not None:
            lines.append(f"  {option.label}: {throughput_text(option.throughput, setting.shape)}")
        else:
            lines.append(f"  {option.label}: ruled out: {option.ruled_out}")
    lines.append(_verdict(chosen, options))
    return tuple(lines)
