"""Parameter counts from the architecture numbers, so a model known only by its config.json can be planned.

Every count is exact for the layer shapes below (the catalog test checks them against published totals):

* attention: q, k, v and o projections (heads x head_dim wide), or DeepSeek's MLA low-rank projections;
  optional biases, per-head q/k norms and gpt-oss's one sink logit per head;
* MLP: gated (SwiGLU/GeGLU), three hidden x width matrices, optional biases;
* MoE layer: a router (hidden x experts, optional bias), every routed expert, the shared experts;
* `norms_per_layer` RMS norms of hidden per layer, a final norm, the embedding and (unless tied) the LM head;
* `extra_params` for what sits outside the language model (a vision encoder).

The split into "experts" and "the rest" matters for memory: mxfp4 checkpoints quantise routed experts only.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.planner.types import ModelArchitecture


@dataclass(frozen=True)
class LayerParams:
    """One decoder layer: routed-expert parameters, and the rest (attention, norms, dense or shared MLP)."""

    experts: int
    rest: int

    @property
    def total(self) -> int:
        return self.experts + self.rest


def attention_params(model: ModelArchitecture) -> int:
    """One layer's attention projections (and their biases, norms and sinks)."""
    h, heads = model.hidden_size, model.num_attention_heads
    mla = model.mla
    if mla is not None:
        qk_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim
        if mla.q_lora_rank is None:
            q = h * heads * qk_head
        else:  # down-projection, its norm, up-projection
            q = h * mla.q_lora_rank + mla.q_lora_rank + mla.q_lora_rank * heads * qk_head
        kv = h * (mla.kv_lora_rank + mla.qk_rope_head_dim) + mla.kv_lora_rank
        kv += mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        return q + kv + heads * mla.v_head_dim * h
    q_width = heads * model.head_dim
    kv_width = model.num_kv_heads * model.head_dim
    params = 2 * h * q_width + 2 * h * kv_width
    if model.qkv_bias:
        params += q_width + 2 * kv_width
    if model.o_bias:
        params += h
    if model.qk_norm:
        params += 2 * model.head_dim
    if model.attention_sinks:
        params += heads
    return params


def mlp_params(model: ModelArchitecture, width: int, *, bias: bool) -> int:
    """A gated MLP: gate and up projections to `width`, a down projection back to hidden."""
    h = model.hidden_size
    return 3 * h * width + (2 * width + h if bias else 0)


def expert_params(model: ModelArchitecture) -> int:
    """One routed expert."""
    assert model.moe is not None
    return mlp_params(model, model.moe.moe_intermediate_size, bias=model.moe.expert_bias)


def layer_params(model: ModelArchitecture, *, moe_layer: bool) -> LayerParams:
    """A dense layer, or (when `moe_layer`) a mixture-of-experts layer."""
    rest = attention_params(model) + model.norms_per_layer * model.hidden_size
    moe = model.moe
    if not moe_layer or moe is None:
        return LayerParams(
            experts=0, rest=rest + mlp_params(model, model.intermediate_size, bias=model.mlp_bias)
        )
    router = model.hidden_size * moe.num_experts + (moe.num_experts if moe.router_bias else 0)
    shared_width = moe.shared_expert_intermediate_size or moe.moe_intermediate_size
    shared = moe.num_shared_experts * mlp_params(model, shared_width, bias=moe.expert_bias)
    return LayerParams(experts=moe.num_experts * expert_params(model), rest=rest + router + shared)


def moe_layer_count(model: ModelArchitecture) -> int:
    return 0 if model.moe is None else model.num_layers - model.moe.num_dense_layers


def edge_matrix_params(model: ModelArchitecture) -> int:
    """One vocab x hidden matrix (the embedding, or the LM head)."""
    return model.vocab_size * model.hidden_size


def count_parameters(model: ModelArchitecture) -> int:
    """Every parameter of the checkpoint the engine loads (the MTP heads some models ship are not loaded)."""
    moe_layers = moe_layer_count(model)
    dense_layers = model.num_layers - moe_layers
    body = dense_layers * layer_params(model, moe_layer=False).total
    body += moe_layers * layer_params(model, moe_layer=True).total
    edges = edge_matrix_params(model) * (1 if model.tied_embeddings else 2)
    return body + model.hidden_size + edges + model.extra_params


def count_active_parameters(model: ModelArchitecture) -> int:
    """Parameters one token runs through: every routed expert replaced by `experts_per_token` of them."""
    total = count_parameters(model)
    moe = model.moe
    if moe is None:
        return total
    idle = (moe.num_experts - moe.experts_per_token) * expert_params(model)
    return total - moe_layer_count(model) * idle


def routed_expert_params(model: ModelArchitecture) -> int:
    """All routed-expert parameters of the model (0 for a dense model)."""
    return moe_layer_count(model) * layer_params(model, moe_layer=True).experts
