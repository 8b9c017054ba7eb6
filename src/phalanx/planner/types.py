"""Plain data the planner consumes and produces.

The planner is pure: catalogs and requests in, a `Plan` (or a `PlanningError`) out. Nothing here
imports the rest of Phalanx, so the API, the engines and the CLI can all depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Dtype = Literal["bf16", "fp16", "fp8", "mxfp4"]
# What a user may ask for; mxfp4 is only ever a checkpoint's own format (gpt-oss), never a conversion.
REQUESTABLE_DTYPES: tuple[Dtype, ...] = ("bf16", "fp16", "fp8")
CheckpointFormat = Literal["hf", "mistral"]

GiB = 1024**3


@dataclass(frozen=True)
class MoE:
    """Mixture-of-experts shape: all experts are resident, only `experts_per_token` run per token."""

    num_experts: int
    experts_per_token: int
    moe_intermediate_size: int
    num_shared_experts: int = 0
    active_params: int = 0
    # Leading layers that keep a dense FFN of `intermediate_size` (DeepSeek's `first_k_dense_replace`): they
    # are lighter than the MoE layers, so the most loaded pipeline stage is one made of MoE layers only.
    num_dense_layers: int = 0
    # Width of each shared expert when it differs from the routed ones (None: moe_intermediate_size).
    shared_expert_intermediate_size: int | None = None
    router_bias: bool = False  # a bias per expert on the router (gpt-oss; DeepSeek's score correction)
    expert_bias: bool = False  # biases inside every expert's projections (gpt-oss)


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): one compressed latent per layer per token."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    # Only the parameter count needs these: the KV cache holds the latent alone.
    q_lora_rank: int | None = None  # None: queries are projected directly from the hidden state
    qk_nope_head_dim: int = 128
    v_head_dim: int = 128


@dataclass(frozen=True)
class ModelArchitecture:
    """The architecture numbers that decide memory and parallelism limits."""

    name: str
    hf_id: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_params: int
    max_context: int
    native_dtype: Dtype = "bf16"
    tied_embeddings: bool = False
    moe: MoE | None = None
    mla: MLA | None = None
    # FP8 block-quantised checkpoints need per-rank shard sizes divisible by this block.
    fp8_block_size: int | None = None
    # Small parameters that only the parameter count needs (see `params.py`).
    qkv_bias: bool = False  # biases on the q, k and v projections (Qwen2, gpt-oss)
    o_bias: bool = False  # a bias on the output projection (gpt-oss)
    qk_norm: bool = False  # RMS norms of head_dim on queries and keys (Qwen3, Gemma 3)
    norms_per_layer: int = 2  # Gemma 2/3 norm before and after both attention and MLP: 4
    mlp_bias: bool = False  # biases on the dense MLP projections
    attention_sinks: bool = False  # one learned sink logit per attention head (gpt-oss)
    # Layers that attend to the last `sliding_window` tokens only: their KV cache stops growing there.
    sliding_window: int | None = None
    sliding_window_layers: int = 0
    # Parameters outside the language model, e.g. a vision encoder: kept in bf16 on the first stage.
    extra_params: int = 0
    # How vLLM must read the checkpoint: Hugging Face files, or Mistral's own format (params.json).
    checkpoint_format: CheckpointFormat = "hf"

    @property
    def full_attention_layers(self) -> int:
        """Layers whose KV cache grows with every token of a sequence."""
        if not self.sliding_window:
            return self.num_layers
        return self.num_layers - self.sliding_window_layers


@dataclass(frozen=True)
class GpuProduct:
    name: str
    memory_bytes: int
    nvlink: bool
    memory_bandwidth: float = 2.0e12  # bytes per second from the GPU's own memory (datasheet peak)
    link_bandwidth: float = 32e9  # bytes per second one way to another GPU of the node (NVLink or PCIe)
    dense_flops: float = (
        312e12  # bf16 tensor FLOP/s without sparsity (datasheet peak); prefill is bound by it
    )


@dataclass(frozen=True)
class InstanceType:
    name: str
    cloud: str
    gpu: GpuProduct
    gpu_count: int


@dataclass(frozen=True)
class GpuShape:
    """What one node offers: how many GPUs and how much memory each."""

    gpus_per_node: int
    gpu_memory_bytes: int
    gpu_product: str
    instance_type: str | None = None


# Whose memory model the budget follows: vLLM's gpu_memory_utilization is the whole GPU's budget
# (weights, KV cache and runtime); SGLang's mem_fraction_static holds weights and KV cache only.
MemoryModel = Literal["vllm", "sglang"]


@dataclass(frozen=True)
class PlanRequest:
    model: ModelArchitecture
    shape: GpuShape
    max_nodes: int | None = None
    nodes: int | None = None  # pinned node count: used as given, or an error if it cannot fit
    max_model_len: int | None = None  # None: the model's full context
    dtype: Dtype | None = None  # None: the checkpoint's native dtype
    gpu_memory_utilization: float = 0.9
    # Pinned layout: used as given, or an error if the model cannot run that way. None: the planner chooses.
    tensor_parallel_size: int | None = None
    data_parallel_size: int | None = None
    memory_model: MemoryModel = "vllm"


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes per GPU on the most loaded pipeline stage."""

    gpu_total: int
    usable: int  # gpu_total * fraction
    weights: int
    runtime_overhead: int
    kv_cache: int  # what is left for the KV cache
    kv_bytes_per_token: int  # per GPU, on the most loaded stage, in the layers that attend to every token
    # Sliding-window layers hold at most `sliding_window` tokens of each sequence (0: no such layers).
    window_kv_bytes_per_token: int = 0
    sliding_window: int = 0
    # The share of the GPU the engine is told: vLLM's gpu_memory_utilization, or SGLang's
    # mem_fraction_static (weights + KV only: its runtime lives in the rest, so runtime_overhead is 0).
    fraction: float = 0.9
    memory_model: MemoryModel = "vllm"


@dataclass(frozen=True)
class Throughput:
    """Estimated steady decode throughput of one layout (see `throughput.py` for the model)."""

    batch: int  # sequences one engine replica decodes together
    weight_bytes_read: int  # per GPU per micro-batch
    kv_bytes_read: int  # per GPU per micro-batch
    memory_seconds: float  # reading both at the GPU's memory bandwidth
    allreduce_seconds: float  # tensor-parallel all-reduces per micro-batch
    tokens_per_second_per_node: float

    @property
    def step_seconds(self) -> float:
        """One micro-batch on one pipeline stage: memory reads plus all-reduces."""
        return self.memory_seconds + self.allreduce_seconds


@dataclass(frozen=True)
class LayoutOption:
    """One layout the planner weighed: its sizes, and either its throughput or why it was ruled out."""

    data_parallel_size: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    throughput: Throughput | None = None
    ruled_out: str = ""  # why it cannot run (empty when it can)

    @property
    def label(self) -> str:
        parts = [f"DP {self.data_parallel_size}"] if self.data_parallel_size > 1 else []
        parts.append(f"TP {self.tensor_parallel_size}")
        if self.pipeline_parallel_size > 1:
            parts.append(f"PP {self.pipeline_parallel_size}")
        return " x ".join(parts)


@dataclass(frozen=True)
class Plan:
    model: str
    hf_id: str
    nodes: int
    gpus_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    dtype: Dtype
    max_model_len: int
    gpu_memory_utilization: float
    memory: MemoryBudget
    kv_cache_tokens: int  # per engine replica
    max_concurrent_sequences: float  # full-length sequences per engine replica
    instance_type: str | None = None
    gpu_product: str = ""
    warnings: tuple[str, ...] = ()
    arithmetic: tuple[str, ...] = field(default=())
    # Engine replicas inside each pod (vLLM --data-parallel-size): each holds the whole model on tp x pp GPUs.
    data_parallel_size: int = 1
    throughput: Throughput | None = None
    layouts: tuple[LayoutOption, ...] = ()  # every layout weighed at this node count, best first
    checkpoint_format: str = "hf"

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def layout(self) -> str:
        """ "DP 4 x TP 2", "TP 8 x PP 2"."""
        return LayoutOption(
            self.data_parallel_size, self.tensor_parallel_size, self.pipeline_parallel_size
        ).label


class PlanningError(Exception):
    """Nothing fits: says what was needed, what was available, and the cheapest fixes."""

    def __init__(
        self,
        message: str,
        *,
        needed_bytes: int | None = None,
        available_bytes: int | None = None,
        fixes: tuple[str, ...] = (),
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes
        self.fixes = fixes
        # The request field to change (a PlanRequest attribute name); None: the model and shape together.
        self.field = field

    def __str__(self) -> str:
        if not self.fixes:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {fix}" for fix in self.fixes)
