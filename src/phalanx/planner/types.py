"""Plain data the planner consumes and produces.

The planner is pure: catalogs and requests in, a `Plan` (or a `PlanningError`) out. Nothing here
imports the rest of Phalanx, so the API, the engines and the CLI can all depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Dtype = Literal["bf16", "fp16", "fp8"]

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


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): one compressed latent per layer per token."""

    kv_lora_rank: int
    qk_rope_head_dim: int


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


@dataclass(frozen=True)
class GpuProduct:
    name: str
    memory_bytes: int
    nvlink: bool


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


@dataclass(frozen=True)
class PlanRequest:
    model: ModelArchitecture
    shape: GpuShape
    max_nodes: int | None = None
    nodes: int | None = None  # pinned node count: used as given, or an error if it cannot fit
    max_model_len: int | None = None  # None: the model's full context
    dtype: Dtype | None = None  # None: the checkpoint's native dtype
    gpu_memory_utilization: float = 0.9


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes per GPU on the most loaded pipeline stage."""

    gpu_total: int
    usable: int  # gpu_total * gpu_memory_utilization
    weights: int
    runtime_overhead: int
    kv_cache: int  # what is left for the KV cache
    kv_bytes_per_token: int  # per GPU, on the most loaded stage


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
    kv_cache_tokens: int
    max_concurrent_sequences: float
    instance_type: str | None = None
    gpu_product: str = ""
    warnings: tuple[str, ...] = ()
    arithmetic: tuple[str, ...] = field(default=())

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


class PlanningError(Exception):
    """Nothing fits: says what was needed, what was available, and the cheapest fixes."""

    def __init__(
        self,
        message: str,
        *,
        needed_bytes: int | None = None,
        available_bytes: int | None = None,
        fixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes
        self.fixes = fixes

    def __str__(self) -> str:
        if not self.fixes:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {fix}" for fix in self.fixes)
