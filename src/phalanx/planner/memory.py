"""The memory model: how many bytes each GPU needs for weights, KV cache and the runtime, as pure formulas.

All figures are integer bytes per GPU on the most loaded pipeline stage, because that GPU runs out first.
The formulas follow what vLLM allocates:

* Weights. Linear layers take 2 bytes per parameter in bf16/fp16 and 1 in fp8. The embedding and the LM head
  stay in the activation dtype (2 bytes) even in fp8, because fp8 quantises linear layers only and the
  checkpoints keep those two matrices in bf16. mxfp4 checkpoints (gpt-oss) quantise the routed experts only:
  4-bit values plus one 8-bit scale per 32 of them, 17/32 byte per parameter; everything else stays bf16.
  Quantisation scales of fp8 checkpoints (one float per 128 x 128 block, 0.02%) are left out. With
  pipeline parallelism the embedding (and a vision encoder, if any) sits on the first stage and the LM head
  on the last, so the heaviest stage holds one vocab x hidden matrix plus ceil(layers / pp) decoder layers;
  with pp = 1 the one stage holds everything. Tensor parallelism shards everything (experts included) over
  tp ranks. Decoder layers weigh the same except in models with leading dense layers (DeepSeek's first 3),
  where a stage of MoE layers only is the heaviest.
* KV cache per token. Standard attention stores K and V: 2 x layers x kv_heads_per_rank x head_dim x 2 bytes,
  where kv_heads_per_rank = max(1, kv_heads // tp) because vLLM replicates KV heads when tp exceeds them.
  MLA (DeepSeek) stores one latent of kv_lora_rank + qk_rope_head_dim per layer, replicated on every TP rank.
  The KV dtype is 2 bytes: vLLM's `--kv-cache-dtype auto` follows the bf16 activations, whatever the weights.
  Sliding-window layers (gpt-oss, Gemma 3) keep at most `sliding_window` tokens of a sequence, so a sequence
  of n tokens takes full_layers x n + sliding_layers x min(n, window) token-layers. The heaviest stage is
  assumed to hold full-attention layers in the model's proportion, rounded up.
* Runtime overhead, which vLLM measures by profiling at startup and we estimate: `runtime_overhead_bytes`.

SGLang budgets differently (`memory_model="sglang"`): its --mem-fraction-static covers the weights and
the KV cache only, the runtime living in a reserve SGLang computes outside it (sglang_memory.py).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from phalanx.planner.params import edge_matrix_params, layer_params, routed_expert_params
from phalanx.planner.sglang_memory import static_fraction
from phalanx.planner.types import Dtype, GiB, MemoryBudget, MemoryModel, ModelArchitecture

KV_DTYPE_BYTES: Final = 2
EDGE_DTYPE_BYTES: Final = 2  # embedding, LM head and a vision encoder: never quantised
MXFP4_EXPERT_BYTES: Final = Fraction(17, 32)  # 4 bits + an 8-bit scale shared by 32 values

# Runtime overhead per GPU, outside weights and KV cache. KAITO budgets 2.3 GiB (0.6 non-torch + 1.7
# activations); this estimate lands between 1.5 and 2.5 GiB for the catalog models, in that neighbourhood.
# CUDA context, cuBLAS workspaces and NCCL communicator buffers: about 0.5 GiB each for the context and NCCL.
NON_TORCH_BYTES: Final = 1 * GiB
# vLLM captures CUDA graphs for its default batch sizes; their memory pool is typically a few hundred MiB.
CUDA_GRAPH_BYTES: Final = GiB // 2
# The largest vLLM default token budget per step for `vllm serve` (8192 on >= 70 GiB GPUs, 2048 below).
MAX_NUM_BATCHED_TOKENS: Final = 8192
# Live tokens x hidden bf16 buffers at the activation peak: residual, normalised input, attention output and
# MLP output. The residual stream is not sharded by TP, so this does not shrink with tp.
ACTIVATION_BUFFERS: Final = 4
ACTIVATION_DTYPE_BYTES: Final = 2


def bytes_per_param(dtype: Dtype) -> int:
    """Bytes per linear-layer weight outside routed experts: fp8 1, the others 2 (mxfp4 leaves them bf16)."""
    return 1 if dtype == "fp8" else 2


def expert_bytes_per_param(dtype: Dtype) -> Fraction:
    """Bytes per routed-expert weight: mxfp4 17/32, otherwise as every other linear layer."""
    return MXFP4_EXPERT_BYTES if dtype == "mxfp4" else Fraction(bytes_per_param(dtype))


def stage_layers(num_layers: int, pp: int) -> int:
    """Decoder layers on the most loaded pipeline stage: vLLM gives the remainder to later stages."""
    return -(-num_layers // pp)


def edge_params(model: ModelArchitecture, pp: int) -> int:
    """Embedding and LM head parameters on the heaviest stage.

    With pp = 1 the stage holds both (one matrix if they are tied); with pp > 1 the first stage holds the
    embedding and the last the LM head, each vocab x hidden, so the heaviest holds one.
    """
    matrix = edge_matrix_params(model)
    return matrix if model.tied_embeddings or pp > 1 else 2 * matrix


def decoder_params(model: ModelArchitecture) -> int:
    """All parameters outside the embedding, the LM head and a vision encoder: the decoder and final norm."""
    return model.num_params - edge_params(model, pp=1) - model.extra_params


def expert_params_total(model: ModelArchitecture) -> int:
    """Routed-expert parameters, never more than the decoder holds (the stated total wins)."""
    return max(0, min(decoder_params(model), routed_expert_params(model)))


def decoder_bytes(model: ModelArchitecture, dtype: Dtype) -> Fraction:
    """The whole decoder's weight bytes in `dtype`."""
    experts = expert_params_total(model)
    rest = decoder_params(model) - experts
    return rest * bytes_per_param(dtype) + experts * expert_bytes_per_param(dtype)


def dense_layer_deficit(model: ModelArchitecture) -> int:
    """How many parameters a leading dense layer has fewer than a MoE layer (0 when all layers are alike)."""
    if model.moe is None or model.moe.num_dense_layers == 0:
        return 0
    return layer_params(model, moe_layer=True).total - layer_params(model, moe_layer=False).total


def _layer_deficit_bytes(model: ModelArchitecture, dtype: Dtype) -> Fraction:
    if dense_layer_deficit(model) <= 0:
        return Fraction(0)
    moe, dense = layer_params(model, moe_layer=True), layer_params(model, moe_layer=False)
    moe_bytes = moe.rest * bytes_per_param(dtype) + moe.experts * expert_bytes_per_param(dtype)
    return moe_bytes - dense.rest * bytes_per_param(dtype)


def stage_decoder_bytes(model: ModelArchitecture, dtype: Dtype, pp: int) -> Fraction:
    """Decoder bytes on the heaviest stage: ceil(layers / pp) of the heaviest kind of layer.

    A MoE layer weighs (decoder + dense layers x deficit) / layers; with no dense layers that is simply the
    average layer. Never more than the whole decoder, which is what a single stage holds.
    """
    body = decoder_bytes(model, dtype)
    if pp == 1:
        return body
    num_dense = model.moe.num_dense_layers if model.moe is not None else 0
    heaviest_total = body + num_dense * _layer_deficit_bytes(model, dtype)
    return min(body, heaviest_total * stage_layers(model.num_layers, pp) / model.num_layers)


def stage_decoder_params(model: ModelArchitecture, pp: int) -> int:
    """Decoder parameters on the heaviest stage (rounded up): the stage bytes at one byte per parameter."""
    return -(-stage_decoder_bytes(model, "fp8", pp) // 1)


def stage_expert_fraction(model: ModelArchitecture, dtype: Dtype) -> Fraction:
    """The share of a stage's decoder bytes that routed experts take (stages hold layers alike)."""
    body = decoder_bytes(model, dtype)
    experts = expert_params_total(model) * expert_bytes_per_param(dtype)
    return experts / body if body else Fraction(0)


def edge_bytes(model: ModelArchitecture, pp: int) -> int:
    """Embedding/LM head and vision encoder bytes on the heaviest stage (the first holds the encoder)."""
    return (edge_params(model, pp) + model.extra_params) * EDGE_DTYPE_BYTES


def weight_bytes_per_gpu(model: ModelArchitecture, dtype: Dtype, tp: int, pp: int) -> int:
    """Weight bytes on one GPU of the heaviest pipeline stage (rounded up)."""
    stage_bytes = edge_bytes(model, pp) + stage_decoder_bytes(model, dtype, pp)
    return -(-stage_bytes // tp)


def kv_heads_per_gpu(model: ModelArchitecture, tp: int) -> int:
    """KV heads each TP rank stores: a share of them, or one replicated head when tp exceeds them (MLA: 1)."""
    if model.mla is not None:
        return 1
    return max(1, model.num_kv_heads // tp)


def kv_bytes_per_layer_token(model: ModelArchitecture, tp: int) -> int:
    """KV-cache bytes one token takes in one layer on one GPU."""
    if model.mla is not None:
        return (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * KV_DTYPE_BYTES
    return 2 * kv_heads_per_gpu(model, tp) * model.head_dim * KV_DTYPE_BYTES


def stage_full_attention_layers(model: ModelArchitecture, pp: int) -> int:
    """Full-attention layers on the heaviest stage: the model's share of them, rounded up."""
    layers = stage_layers(model.num_layers, pp)
    full = model.full_attention_layers
    if pp == 1 or full == model.num_layers:
        return min(layers, full)
    return min(layers, -(-full * layers // model.num_layers))


def kv_bytes_per_token(model: ModelArchitecture, tp: int, pp: int) -> int:
    """KV-cache bytes one token takes on one GPU of the heaviest stage, in its full-attention layers."""
    return stage_full_attention_layers(model, pp) * kv_bytes_per_layer_token(model, tp)


def window_kv_bytes_per_token(model: ModelArchitecture, tp: int, pp: int) -> int:
    """The same in the stage's sliding-window layers, which hold at most `sliding_window` tokens each."""
    if not model.sliding_window or not model.sliding_window_layers:
        return 0
    sliding = stage_layers(model.num_layers, pp) - stage_full_attention_layers(model, pp)
    return sliding * kv_bytes_per_layer_token(model, tp)


def activation_bytes(model: ModelArchitecture) -> int:
    """Peak activation memory: one step's tokens x hidden, in a few bf16 buffers (see the constants)."""
    return MAX_NUM_BATCHED_TOKENS * model.hidden_size * ACTIVATION_DTYPE_BYTES * ACTIVATION_BUFFERS


def runtime_overhead_bytes(model: ModelArchitecture) -> int:
    """Per-GPU memory the engine uses besides weights and KV cache: non-torch + CUDA graphs + activations."""
    return NON_TORCH_BYTES + CUDA_GRAPH_BYTES + activation_bytes(model)


def usable_bytes(gpu_memory_bytes: int, gpu_memory_utilization: float) -> int:
    """floor(gpu memory x utilization), exactly: 0.9 means 9/10, not the nearest binary float."""
    fraction = Fraction(repr(gpu_memory_utilization))
    return gpu_memory_bytes * fraction.numerator // fraction.denominator


def memory_fraction(
    model: ModelArchitecture,
    tp: int,
    pp: int,
    gpu_memory_bytes: int,
    gpu_memory_utilization: float,
    memory_model: MemoryModel = "vllm",
) -> float:
    """The share of each GPU the engine is told: gpu_memory_utilization for vLLM; for SGLang the
    smaller of it and SGLang's own default (sglang_memory.py), as SGLang's share excludes its runtime."""
    if memory_model == "vllm":
        return gpu_memory_utilization
    mla = model.mla is not None
    return static_fraction(gpu_memory_bytes, tp, pp, mla=mla, utilization=gpu_memory_utilization)


def memory_budget(
    model: ModelArchitecture,
    dtype: Dtype,
    tp: int,
    pp: int,
    gpu_memory_bytes: int,
    gpu_memory_utilization: float,
    memory_model: MemoryModel = "vllm",
) -> MemoryBudget:
    """The per-GPU budget on the heaviest stage; `kv_cache` is what is left and may be negative.

    vLLM: KV = GPU x utilization - weights - runtime overhead. SGLang: KV = GPU x fraction - weights, the
    runtime being SGLang's reserve outside the fraction.
    """
    fraction = memory_fraction(model, tp, pp, gpu_memory_bytes, gpu_memory_utilization, memory_model)
    usable = usable_bytes(gpu_memory_bytes, fraction)
    weights = weight_bytes_per_gpu(model, dtype, tp, pp)
    overhead = runtime_overhead_bytes(model) if memory_model == "vllm" else 0
    return MemoryBudget(
        gpu_total=gpu_memory_bytes,
        usable=usable,
        weights=weights,
        runtime_overhead=overhead,
        kv_cache=usable - weights - overhead,
        kv_bytes_per_token=kv_bytes_per_token(model, tp, pp),
        window_kv_bytes_per_token=window_kv_bytes_per_token(model, tp, pp),
        sliding_window=model.sliding_window or 0,
        fraction=fraction,
        memory_model=memory_model,
    )


def sequence_kv_bytes(budget: MemoryBudget, length: int) -> int:
    """KV bytes one sequence of `length` tokens takes on one GPU (vLLM refuses to start without room for one
    of max_model_len): every token in full-attention layers, the last `sliding_window` in the others."""
    window = min(length, budget.sliding_window) * budget.window_kv_bytes_per_token
    return budget.kv_bytes_per_token * length + window


def fits(budget: MemoryBudget, max_model_len: int) -> bool:
    """Whether the KV budget holds at least one sequence of `max_model_len` tokens."""
    return budget.kv_cache >= sequence_kv_bytes(budget, max_model_len)


def needed_bytes(budget: MemoryBudget, max_model_len: int) -> int:
    """Per-GPU bytes for weights, runtime and one full-length sequence: the least a GPU must offer."""
    return budget.weights + budget.runtime_overhead + sequence_kv_bytes(budget, max_model_len)


def kv_cache_tokens(budget: MemoryBudget, max_model_len: int) -> int:
    """Tokens the KV budget holds when filled with `max_model_len`-token sequences (0 with no budget).

    Without sliding-window layers every token costs the same, whatever the sequence length.
    """
    if budget.kv_cache <= 0:
        return 0
    if not budget.window_kv_bytes_per_token:
        return budget.kv_cache // budget.kv_bytes_per_token
    return budget.kv_cache * max_model_len // sequence_kv_bytes(budget, max_model_len)


def longest_sequence(budget: MemoryBudget) -> int | None:
    """The longest sequence whose KV fits the budget; None when any length fits (sliding layers only)."""
    kv, per, window = max(0, budget.kv_cache), budget.kv_bytes_per_token, budget.window_kv_bytes_per_token
    if not window:
        return kv // per
    span = budget.sliding_window
    if per == 0:
        return None if kv >= window * span else kv // window
    beyond_window = (kv - window * span) // per
    return beyond_window if beyond_window >= span else kv // (per + window)
