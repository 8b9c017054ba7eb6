"""The ModelDeployment resource: a model, an engine and a GPU shape (KAITO-like).

The planner turns it into a ModelServing: how many nodes, tensor and pipeline parallel sizes, and
the engine's launch commands. Everything the user writes here is plain intent; nothing in it names
a pod.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from phalanx.api.base import ApiModel, Condition, ObjectMeta
from phalanx.api.modelserving import RecoveryPolicy, RolloutStrategy

Engine = Literal["vllm", "sglang", "sim"]
Launcher = Literal["ray", "native"]
Dtype = Literal["bf16", "fp16", "fp8"]
# How prefill pods hand their KV cache to decode pods; which ones each engine takes is in CONNECTORS.
Connector = Literal["nixl", "lmcache", "p2pnccl", "mooncake"]
Pairing = Literal["ModelServing", "ServingGroup"]
CONNECTORS: dict[str, tuple[Connector, ...]] = {
    "vllm": ("nixl", "lmcache", "p2pnccl"),
    "sglang": ("mooncake", "nixl"),
    "sim": ("nixl",),
}


class ModelArchitectureSpec(ApiModel):
    """Architecture numbers for a model that is not in the catalog (from its config.json)."""

    num_hidden_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    num_key_value_heads: int = Field(ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    intermediate_size: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    num_parameters: int = Field(ge=1)
    max_position_embeddings: int = Field(ge=1)
    dtype: Dtype = "bf16"
    tie_word_embeddings: bool = False
    num_experts: int | None = Field(default=None, ge=1)
    num_experts_per_token: int | None = Field(default=None, ge=1)
    moe_intermediate_size: int | None = Field(default=None, ge=1)
    kv_lora_rank: int | None = Field(default=None, ge=1)
    qk_rope_head_dim: int | None = Field(default=None, ge=1)


def _model_shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class ModelRef(ApiModel):
    # A catalog name ('llama-3.3-70b-instruct'), or a Hugging Face id with `config` or `architecture`.
    name: str = Field(min_length=1)
    # The model's config.json, keys as written there; the planner reads the architecture from it.
    config: dict[str, Any] | None = None
    architecture: ModelArchitectureSpec | None = None
    served_name: str | None = None  # the `model` clients send; defaults to `name`
    revision: str | None = None


class PdSide(ApiModel):
    """One side (prefill or decode) of a disaggregated ServingGroup."""

    replicas: int | None = Field(default=None, ge=1)  # role instances per ServingGroup
    tensor_parallel_size: int | None = Field(default=None, ge=1)  # None: the planner chooses
    nodes: int | None = Field(default=None, ge=1)  # per role instance; None: the planner chooses


class Disaggregation(ApiModel):
    """Serve prefill and decode on separate role instances of each ServingGroup."""

    connector: Connector | None = None  # None: the engine's first in CONNECTORS
    prefill: PdSide = Field(default_factory=PdSide)
    decode: PdSide = Field(default_factory=PdSide)
    ratio: str | None = None  # "prefill:decode" role instances, e.g. "1:3"; instead of replicas
    pairing: Pairing = "ModelServing"
    proxy: str | None = None  # p2pnccl only: host:port of the proxy the engines register with


class Workload(ApiModel):
    """The requests the deployment expects; the planner sizes prefill and decode from them."""

    prompt_tokens: int | None = Field(default=None, ge=1)
    output_tokens: int | None = Field(default=None, ge=1)
    ttft_seconds: float | None = Field(default=None, gt=0)  # target for one prompt's prefill


class DeploymentAutoscaling(ApiModel):
    """Scale the ServingGroups between minReplicas and maxReplicas on the targets given: Phalanx
    writes an AutoscalingPolicy (named after the deployment) for the ModelServing it compiles to."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1)
    queue_per_group: float | None = Field(default=None, gt=0)  # requests the router holds per group
    kv_usage: float | None = Field(default=None, gt=0, le=1)  # engine KV-cache usage per group, 0..1
    ttft_seconds: float | None = Field(default=None, gt=0)  # time to first token, p95: an objective
    itl_seconds: float | None = Field(default=None, gt=0)  # inter-token latency, p95: an objective
    observe_only: bool = False  # decide and report, change nothing


class ModelDeploymentSpec(ApiModel):
    model: Annotated[ModelRef, BeforeValidator(_model_shorthand)]
    engine: Engine = "vllm"
    launcher: Launcher = "ray"  # vllm only: Ray cluster, or vLLM's native --nnodes launcher
    image: str | None = None
    instance_type: str | None = None
    gpus_per_node: int | None = Field(default=None, ge=1)
    gpu_memory: str | None = None  # per GPU, e.g. '80Gi'
    gpu_product: str | None = None
    max_nodes: int | None = Field(default=None, ge=1)
    nodes: int | None = Field(default=None, ge=1)  # pin the node count per ServingGroup
    # Pin the layout: GPUs per tensor-parallel group, engine replicas per node (None: the planner chooses).
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    data_parallel_size: int | None = Field(default=None, ge=1)
    replicas: int = Field(default=1, ge=0)
    max_model_len: int | None = Field(default=None, ge=1)
    dtype: Dtype | None = None
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    engine_args: list[str] = Field(default_factory=list)  # appended last, so they win
    env: list[dict[str, Any]] = Field(default_factory=list)
    model_access_secret: str | None = None  # Secret with key HF_TOKEN
    scheduler_name: str = "volcano"
    recovery_policy: RecoveryPolicy = "RoleRecreate"
    rollout_strategy: RolloutStrategy | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    disaggregation: Disaggregation | None = None
    workload: Workload | None = None
    autoscaling: DeploymentAutoscaling | None = None


class ModelDeploymentStatus(ApiModel):
    observed_generation: int = 0
    model_serving: str = ""
    plan: dict[str, Any] = Field(default_factory=dict)
    conditions: list[Condition] = Field(default_factory=list)


class ModelDeployment(ApiModel):
    api_version: Literal["serving.phalanx.dev/v1alpha1"] = "serving.phalanx.dev/v1alpha1"
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name
