"""A simple decode-throughput model, to choose between layouts of the same GPUs (DP x TP x PP).

Decode is memory-bandwidth bound: every step, each GPU reads its share of the weights and the KV cache of
every sequence it is decoding, and tensor parallelism adds two all-reduces per layer. The model, per engine
replica (one data-parallel rank of tp x pp GPUs):

* batch = min(MAX_NUM_SEQS, sequences of REFERENCE_CONTEXT tokens the KV budget holds): a replica with
  little KV room cannot batch, however fast it reads.
* With pp stages the batch is split into pp micro-batches of batch / pp sequences that keep every stage busy.
  One micro-batch on one stage takes
      (weights read + micro-batch x KV bytes of one sequence) / memory bandwidth
      + 2 x layers on the stage x all-reduce(micro-batch x hidden x 2 bytes)          (tp > 1 only)
  where a MoE stage reads only the experts its tokens were routed to: 1 - (1 - k/E)^tokens of them,
  tokens routed uniformly.
* An all-reduce of S bytes over n GPUs takes NCCL's ring latency, 3.6 us + 2(n-1) hops x 0.47 us (NVLink) or
  1.0 us (PCIe), plus 2(n-1)/n x S / link bandwidth: the latency figures are NCCL's own tuning model
  (src/graph/tuning.cc, ring/LL protocol), the bandwidths the GPU catalog's datasheet figures.
* tokens per second per node = data-parallel replicas x micro-batch / step time / nodes.

Left out on purpose: prefill, compute limits, CPU scheduling and kernel-launch gaps, and pipeline bubbles.
The figures rank layouts of one shape against each other; they are not a benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from phalanx.planner.catalog.gpus import find_gpu_product
from phalanx.planner.memory import (
    sequence_kv_bytes,
    stage_expert_fraction,
    stage_layers,
)
from phalanx.planner.types import (
    Dtype,
    GiB,
    GpuProduct,
    GpuShape,
    MemoryBudget,
    ModelArchitecture,
    Throughput,
)

# Average tokens of context each sequence in flight holds: the prompt length of vLLM's serving benchmark
# (`vllm bench serve` random dataset, 1024 input tokens), which most published vLLM throughput figures use.
REFERENCE_CONTEXT: Final = 1024
# vLLM's default --max-num-seqs for `vllm serve`: 1024 on GPUs of 70 GiB and more, 256 below (per engine,
# so per data-parallel rank).
MAX_NUM_SEQS_LARGE: Final = 1024
MAX_NUM_SEQS_SMALL: Final = 256
LARGE_GPU_BYTES: Final = 70 * GiB
ALLREDUCES_PER_LAYER: Final = 2  # after attention and after the MLP
ACTIVATION_BYTES: Final = 2
# NCCL ring all-reduce latency (LL protocol): a base plus one hop latency per step, 2(n-1) steps.
ALLREDUCE_BASE_SECONDS: Final = 3.6e-6
HOP_SECONDS_NVLINK: Final = 0.47e-6
HOP_SECONDS_PCIE: Final = 1.0e-6
# A GPU product the catalog does not know: an A100/H100-class part with NVLink.
UNKNOWN_GPU: Final = GpuProduct(
    "unknown", 80 * GiB, nvlink=True, memory_bandwidth=2.0e12, link_bandwidth=300e9, dense_flops=312e12
)


@dataclass(frozen=True)
class Replica:
    """One engine replica of a layout, as the throughput model needs it."""

    data_parallel_size: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    nodes: int
    weights: int  # bytes per GPU on the heaviest stage
    budget: MemoryBudget


def gpu_of(shape: GpuShape) -> GpuProduct:
    """The catalog product of `shape`, or a stated stand-in when the product is not in the catalog."""
    product = find_gpu_product(shape.gpu_product) if shape.gpu_product else None
    return product or UNKNOWN_GPU


def max_num_seqs(shape: GpuShape) -> int:
    return MAX_NUM_SEQS_LARGE if shape.gpu_memory_bytes >= LARGE_GPU_BYTES else MAX_NUM_SEQS_SMALL


def batch_size(replica: Replica, shape: GpuShape, max_model_len: int, context: int | None = None) -> int:
    """Sequences one replica decodes together: the engine's cap, or what its KV cache holds of sequences
    of `context` tokens (default: REFERENCE_CONTEXT)."""
    context = min(context or REFERENCE_CONTEXT, max_model_len)
    held = max(0, replica.budget.kv_cache) // sequence_kv_bytes(replica.budget, context)
    return max(1, min(max_num_seqs(shape), held))


def allreduce_seconds(size_bytes: float, ranks: int, gpu: GpuProduct) -> float:
    """One ring all-reduce of `size_bytes` over `ranks` GPUs of one node."""
    if ranks == 1:
        return 0.0
    hop = HOP_SECONDS_NVLINK if gpu.nvlink else HOP_SECONDS_PCIE
    latency = ALLREDUCE_BASE_SECONDS + 2 * (ranks - 1) * hop
    return latency + 2 * (ranks - 1) / ranks * size_bytes / gpu.link_bandwidth


def experts_touched(model: ModelArchitecture, tokens: float) -> float:
    """The share of a MoE layer's experts that `tokens` tokens are routed to (uniform routing)."""
    if model.moe is None:
        return 1.0
    untouched: float = (1.0 - model.moe.experts_per_token / model.moe.num_experts) ** tokens
    return 1.0 - untouched


def estimate(
    model: ModelArchitecture,
    dtype: Dtype,
    shape: GpuShape,
    replica: Replica,
    max_model_len: int,
    context: int | None = None,
) -> Throughput:
    """Decode throughput of `replica`'s layout on `shape` (see the module docstring for the model), with
    sequences of `context` tokens in flight (default: REFERENCE_CONTEXT)."""
    gpu = gpu_of(shape)
    pp, tp = replica.pipeline_parallel_size, replica.tensor_parallel_size
    batch = batch_size(replica, shape, max_model_len, context)
    micro = batch / pp
    expert_share = float(stage_expert_fraction(model, dtype))
    weights = replica.weights * (1 - expert_share + expert_share * experts_touched(model, micro))
    context = min(context or REFERENCE_CONTEXT, max_model_len)
    kv = micro * sequence_kv_bytes(replica.budget, context)
    memory = (weights + kv) / gpu.memory_bandwidth
    layers = stage_layers(model.num_layers, pp)
    message = micro * model.hidden_size * ACTIVATION_BYTES
    reduce = ALLREDUCES_PER_LAYER * layers * allreduce_seconds(message, tp, gpu)
    per_node = replica.data_parallel_size * micro / (memory + reduce) / replica.nodes
    return Throughput(
        batch=batch,
        weight_bytes_read=round(weights),
        kv_bytes_read=round(kv),
        memory_seconds=memory,
        allreduce_seconds=reduce,
        tokens_per_second_per_node=per_node,
    )
