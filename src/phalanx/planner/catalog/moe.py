"""Mixture-of-experts models: every expert is resident, a few run per token.

As in `dense.py`, the numbers are the published configs' and `num_params` (and `active_params`) the exact
counts they give, recomputed by the catalog test. MTP heads that some checkpoints ship are left out: vLLM
loads them only for speculative decoding.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from phalanx.planner.types import MLA, ModelArchitecture, MoE

MIXTRAL_8X7B_INSTRUCT: Final = ModelArchitecture(
    name="mixtral-8x7b-instruct",
    hf_id="mistralai/Mixtral-8x7B-Instruct-v0.1",
    num_layers=32,
    hidden_size=4096,
    num_attention_heads=32,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=14336,
    vocab_size=32000,
    num_params=46_702_792_704,
    max_context=32768,
    moe=MoE(num_experts=8, experts_per_token=2, moe_intermediate_size=14336, active_params=12_879_925_248),
)

# Every layer is MoE (no shared expert); the query width (heads x 128) differs from the hidden size, and
# each layer has q/k RMS norms of head_dim. The configs' dense intermediate_size is used by no layer.
QWEN3_30B_A3B: Final = ModelArchitecture(
    name="qwen3-30b-a3b",
    hf_id="Qwen/Qwen3-30B-A3B",
    num_layers=48,
    hidden_size=2048,
    num_attention_heads=32,
    num_kv_heads=4,
    head_dim=128,
    intermediate_size=6144,
    vocab_size=151936,
    num_params=30_532_122_624,
    max_context=40960,
    moe=MoE(num_experts=128, experts_per_token=8, moe_intermediate_size=768, active_params=3_353_032_704),
    qk_norm=True,
)

QWEN3_235B_A22B: Final = ModelArchitecture(
    name="qwen3-235b-a22b",
    hf_id="Qwen/Qwen3-235B-A22B",
    num_layers=94,
    hidden_size=4096,
    num_attention_heads=64,
    num_kv_heads=4,
    head_dim=128,
    intermediate_size=12288,
    vocab_size=151936,
    num_params=235_093_634_560,
    max_context=40960,
    moe=MoE(num_experts=128, experts_per_token=8, moe_intermediate_size=1536, active_params=22_190_763_520),
    qk_norm=True,
)

# gpt-oss: biases on q/k/v/o and inside every expert, a router bias, one attention-sink logit per head,
# alternating sliding-window (128 tokens) and full-attention layers. The checkpoint stores the routed
# experts in mxfp4 and everything else in bf16.
GPT_OSS_120B_EXPERTS: Final = MoE(
    num_experts=128,
    experts_per_token=4,
    moe_intermediate_size=2880,
    active_params=5_711_982_912,
    router_bias=True,
    expert_bias=True,
)
GPT_OSS_120B: Final = ModelArchitecture(
    name="gpt-oss-120b",
    hf_id="openai/gpt-oss-120b",
    num_layers=36,
    hidden_size=2880,
    num_attention_heads=64,
    num_kv_heads=8,
    head_dim=64,
    intermediate_size=2880,
    vocab_size=201088,
    num_params=116_829_156_672,
    max_context=131072,
    native_dtype="mxfp4",
    moe=GPT_OSS_120B_EXPERTS,
    qkv_bias=True,
    o_bias=True,
    attention_sinks=True,
    sliding_window=128,
    sliding_window_layers=18,
)
GPT_OSS_20B: Final = dataclasses.replace(
    GPT_OSS_120B,
    name="gpt-oss-20b",
    hf_id="openai/gpt-oss-20b",
    num_layers=24,
    num_params=20_914_757_184,
    moe=dataclasses.replace(GPT_OSS_120B_EXPERTS, num_experts=32, active_params=4_187_440_704),
    sliding_window_layers=12,
)

# 3 dense layers then 58 MoE layers; MLA attention (q_lora_rank 1536, kv_lora_rank 512, qk_nope 128,
# qk_rope 64, v 128; num_key_value_heads 128 in the config, but the KV cache holds only the latent); the
# router carries a per-expert score-correction bias. The checkpoint is FP8 with 128 x 128 weight blocks;
# 671.03B is the main model without the 14B MTP module.
DEEPSEEK_V3_EXPERTS: Final = MoE(
    num_experts=256,
    experts_per_token=8,
    moe_intermediate_size=2048,
    num_shared_experts=1,
    active_params=37_552_297_472,
    num_dense_layers=3,
    router_bias=True,
)
DEEPSEEK_V3: Final = ModelArchitecture(
    name="deepseek-v3",
    hf_id="deepseek-ai/DeepSeek-V3",
    num_layers=61,
    hidden_size=7168,
    num_attention_heads=128,
    num_kv_heads=128,
    head_dim=128,
    intermediate_size=18432,
    vocab_size=129280,
    num_params=671_026_419_200,
    max_context=163840,
    native_dtype="fp8",
    moe=DEEPSEEK_V3_EXPERTS,
    mla=MLA(kv_lora_rank=512, qk_rope_head_dim=64, q_lora_rank=1536, qk_nope_head_dim=128, v_head_dim=128),
    fp8_block_size=128,
)

# R1 is a post-trained DeepSeek-V3, and the 0324/0528 releases are later checkpoints of the same
# architecture and format.
DEEPSEEK_R1: Final = dataclasses.replace(DEEPSEEK_V3, name="deepseek-r1", hf_id="deepseek-ai/DeepSeek-R1")
DEEPSEEK_R1_0528: Final = dataclasses.replace(
    DEEPSEEK_V3, name="deepseek-r1-0528", hf_id="deepseek-ai/DeepSeek-R1-0528"
)
DEEPSEEK_V3_0324: Final = dataclasses.replace(
    DEEPSEEK_V3, name="deepseek-v3-0324", hf_id="deepseek-ai/DeepSeek-V3-0324"
)

# Mistral Large 3 ships only in Mistral's own format (params.json), which vLLM runs with its DeepSeek-V3
# model class. What is published: 61 layers of 7168, 128 heads, MLA with a 512 + 64 latent, FP8 weights,
# a 131072-token vocabulary, 262144 tokens of context (vLLM's default), 673B language-model parameters and
# a 2.5B vision encoder. The expert layout is not published outside params.json: it is taken as
# DeepSeek-V3's (256 routed experts of 2048 + 1 shared, 8 per token, 3 dense layers), which gives 671.05B,
# 0.3% under the published 673B; the checkpoint size this implies is within 0.5% of the one KAITO lists.
MISTRAL_LARGE_3_675B_INSTRUCT: Final = dataclasses.replace(
    DEEPSEEK_V3,
    name="mistral-large-3-675b-instruct",
    hf_id="mistralai/Mistral-Large-3-675B-Instruct-2512",
    vocab_size=131072,
    num_params=673_552_109_312,
    max_context=262144,
    moe=dataclasses.replace(DEEPSEEK_V3_EXPERTS, active_params=40_077_987_584),
    extra_params=2_500_000_000,
    checkpoint_format="mistral",
)

MOE_MODELS: Final[tuple[ModelArchitecture, ...]] = (
    MIXTRAL_8X7B_INSTRUCT,
    QWEN3_30B_A3B,
    QWEN3_235B_A22B,
    GPT_OSS_20B,
    GPT_OSS_120B,
    DEEPSEEK_V3,
    DEEPSEEK_R1,
    DEEPSEEK_V3_0324,
    DEEPSEEK_R1_0528,
    MISTRAL_LARGE_3_675B_INSTRUCT,
)
