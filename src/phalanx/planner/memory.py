"""The memory model: how many bytes each GPU needs for weights, KV cache and the runtime, as pure formulas.

All figures are integer bytes per GPU on the most loaded pipeline stage, because that GPU runs out first.
The formulas follow what vLLM allocates (see shared/reference/runtime.md §5.1-5.2):

* Weights. Linear layers take 2 bytes per parameter in bf16/fp16 and 1 in fp8. The embedding and the LM head
  stay in the activation dtype (2 bytes) even in fp8, because fp8 quantises linear layers only and the
  checkpoints keep those two matrices in bf16. With pipeline parallelism the embedding sits on the first
  stage and the LM head on the last, so the heaviest stage holds one vocab x hidden matrix plus
  ceil(layers / pp) decoder layers; with pp = 1 the one stage holds everything. Tensor parallelism shards
  everything (experts included) over tp ranks. Decoder layers weigh the same except in models with leading
  dense layers (DeepSeek's first 3), where a stage of MoE layers only is the heaviest.
* KV cache per token. Standard attention stores K and V: 2 x layers x kv_heads_per_rank x head_dim x 2 bytes,
  where kv_heads_per_rank = max(1, kv_heads // tp) because vLLM replicates KV heads when tp exceeds them.
  MLA (DeepSeek) stores one latent of kv_lora_rank + qk_rope_head_dim per layer, replicated on every TP rank.
  The KV dtype is 2 bytes: vLLM's `--kv-cache-dtype auto` follows the bf16 activations, fp8 weights or not.
* Runtime overhead, which vLLM measures by profiling at startup and we estimate: `runtime_overhead_bytes`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from phalanx.planner.types import Dtype, GiB, MemoryBudget, ModelArchitecture

KV_DTYPE_BYTES: Final = 2
EDGE_DTYPE_BYTES: Final = 2  # embedding and LM head: never quantised

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
    """Bytes per linear-layer weight: fp8 1, bf16 and fp16 2 (an fp8 checkpoint served in bf16 is upcast)."""
    return 1 if dtype == "fp8" else 2


def stage_layers(num_layers: int, pp: int) -> int:
    """Decoder layers on the most loaded pipeline stage: vLLM gives the remainder to later stages."""
    return -(-num_layers // pp)


def edge_params(model: ModelArchitecture, pp: int) -> int:
    """Embedding and LM head parameters on the heaviest stage.

    With pp = 1 the stage holds both (one matrix if they are tied); with pp > 1 the first stage holds the
    embedding and the last the LM head, each vocab x hidden, so the heaviest holds one.
    """
    matrix = model.vocab_size * model.hidden_size
    return matrix if model.tied_embeddings or pp > 1 else 2 * matrix


def decoder_params(model: ModelArchitecture) -> int:
    """All parameters outside the embedding and LM head: the decoder layers and the final norm."""
    return model.num_params - edge_params(model, pp=1)


def dense_layer_deficit(model: ModelArchitecture) -> int:
    """How many parameters a leading dense layer has fewer than a MoE layer (0 when all layers are alike)."""
    moe = model.moe
    if moe is None or moe.num_dense_layers == 0:
        return 0
    experts = (moe.num_experts + moe.num_shared_experts) * 3 * model.hidden_size * moe.moe_intermediate_size
    router = model.hidden_size * moe.num_experts
    dense_ffn = 3 * model.hidden_size * model.intermediate_size
    return experts + router - dense_ffn


def stage_decoder_params(model: ModelArchitecture, pp: int) -> int:
    """Decoder parameters on the heaviest stage: ceil(layers / pp) of the heaviest kind of layer.

    A MoE layer weighs (decoder params + dense layers x deficit) / layers; with no dense layers that is simply
    the average layer. Never more than the whole decoder, which is what a single stage holds.
    """
    body = decoder_params(model)
    if pp == 1:
        return body
    num_dense = model.moe.num_dense_layers if model.moe is not None else 0
    heaviest_total = body + num_dense * dense_layer_deficit(model)
    return min(body, -(-heaviest_total * stage_layers(model.num_layers, pp) // model.num_layers))


def weight_bytes_per_gpu(model: ModelArchitecture, dtype: Dtype, tp: int, pp: int) -> int:
    """Weight bytes on one GPU of the heaviest pipeline stage (rounded up)."""
    stage_bytes = edge_params(model, pp) * EDGE_DTYPE_BYTES + stage_decoder_params(
        model, pp
    ) * bytes_per_param(dtype)
    return -(-stage_bytes // tp)


def kv_heads_per_gpu(model: ModelArchitecture, tp: int) -> int:
    """KV heads each TP rank stores: a share of them, or one replicated head when tp exceeds them (MLA: 1)."""
    if model.mla is not None:
        return 1
    return max(1, model.num_kv_heads // tp)


def kv_bytes_per_token(model: ModelArchitecture, tp: int, pp: int) -> int:
    """KV-cache bytes one token takes on one GPU of the heaviest stage."""
    layers = stage_layers(model.num_layers, pp)
    if model.mla is not None:
        return layers * (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * KV_DTYPE_BYTES
    return 2 * layers * kv_heads_per_gpu(model, tp) * model.head_dim * KV_DTYPE_BYTES


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


def memory_budget(
    model: ModelArchitecture,
    dtype: Dtype,
    tp: int,
    pp: int,
    gpu_memory_bytes: int,
    gpu_memory_utilization: float,
) -> MemoryBudget:
    """The per-GPU budget on the heaviest stage; `kv_cache` is what is left and may be negative."""
    usable = usable_bytes(gpu_memory_bytes, gpu_memory_utilization)
    weights = weight_bytes_per_gpu(model, dtype, tp, pp)
    overhead = runtime_overhead_bytes(model)
    return MemoryBudget(
        gpu_total=gpu_memory_bytes,
        usable=usable,
        weights=weights,
        runtime_overhead=overhead,
        kv_cache=usable - weights - overhead,
        kv_bytes_per_token=kv_bytes_per_token(model, tp, pp),
    )


def sequence_kv_bytes(budget: MemoryBudget, max_model_len: int) -> int:
    """KV bytes one full-length sequence takes on one GPU: vLLM refuses to start without room for one."""
    return budget.kv_bytes_per_token * max_model_len


def fits(budget: MemoryBudget, max_model_len: int) -> bool:
    """Whether the KV budget holds at least one sequence of `max_model_len` tokens."""
    return budget.kv_cache >= sequence_kv_bytes(budget, max_model_len)


def needed_bytes(budget: MemoryBudget, max_model_len: int) -> int:
    """Per-GPU bytes for weights, runtime and one full-length sequence: the least a GPU must offer."""
    return budget.weights + budget.runtime_overhead + sequence_kv_bytes(budget, max_model_len)


def kv_cache_tokens(budget: MemoryBudget) -> int:
    """Tokens the KV budget holds (0 when there is no budget)."""
    return max(0, budget.kv_cache) // budget.kv_bytes_per_token
