"""The models Phalanx can plan for, with the architecture numbers that decide memory and parallelism.

Numbers come from each model's published config (see shared/reference/runtime.md §5.3). Parameter
counts are exact integers recomputed from those dimensions (SwiGLU MLP = 3 x hidden x intermediate, norms
included, MTP heads excluded because vLLM does not load them unless speculative decoding asks for them);
`tests/unit/planner/test_catalog.py` recomputes every one from the fields below, so a typo in a dimension
cannot hide. Context limits are the ones the serving engine accepts without rope-scaling overrides.

Models are looked up by catalog name, by Hugging Face id, or by the last part of that id, all
case-insensitively; an unknown name raises `UnknownModelError` (a KeyError) carrying close names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from phalanx.planner.catalog.names import UnknownNameError, close_names, normalise
from phalanx.planner.types import MLA, ModelArchitecture, MoE

LLAMA_3_1_8B_INSTRUCT: Final = ModelArchitecture(
    name="llama-3.1-8b-instruct",
    hf_id="meta-llama/Llama-3.1-8B-Instruct",
    num_layers=32,
    hidden_size=4096,
    num_attention_heads=32,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=14336,
    vocab_size=128256,
    num_params=8_030_261_248,
    max_context=131072,
)

LLAMA_3_1_70B_INSTRUCT: Final = ModelArchitecture(
    name="llama-3.1-70b-instruct",
    hf_id="meta-llama/Llama-3.1-70B-Instruct",
    num_layers=80,
    hidden_size=8192,
    num_attention_heads=64,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=28672,
    vocab_size=128256,
    num_params=70_553_706_496,
    max_context=131072,
)

# Llama 3.3 70B reuses the Llama 3.1 70B architecture unchanged.
LLAMA_3_3_70B_INSTRUCT: Final = dataclasses.replace(
    LLAMA_3_1_70B_INSTRUCT, name="llama-3.3-70b-instruct", hf_id="meta-llama/Llama-3.3-70B-Instruct"
)

LLAMA_3_1_405B_INSTRUCT: Final = ModelArchitecture(
    name="llama-3.1-405b-instruct",
    hf_id="meta-llama/Llama-3.1-405B-Instruct",
    num_layers=126,
    hidden_size=16384,
    num_attention_heads=128,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=53248,
    vocab_size=128256,
    num_params=405_853_388_800,
    max_context=131072,
)

# 72.71B includes the QKV biases. The config allows 131072 tokens only with a YaRN rope_scaling override.
QWEN2_5_72B_INSTRUCT: Final = ModelArchitecture(
    name="qwen2.5-72b-instruct",
    hf_id="Qwen/Qwen2.5-72B-Instruct",
    num_layers=80,
    hidden_size=8192,
    num_attention_heads=64,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=29568,
    vocab_size=152064,
    num_params=72_706_203_648,
    max_context=32768,
)

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

# Every layer is MoE (no shared expert); 64 query heads x 128 = 8192 is wider than hidden 4096, and each
# layer has q/k RMS norms of head_dim. The config's dense intermediate_size 12288 is unused by any layer.
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
)

# 3 dense layers then 58 MoE layers; MLA attention (q_lora_rank 1536, kv_lora_rank 512, qk_nope 128,
# qk_rope 64, v 128; num_key_value_heads 128 in the config, but the KV cache holds only the latent).
# The checkpoint is FP8 with 128 x 128 weight blocks; 671.03B is the main model without the 14B MTP module.
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
    moe=MoE(
        num_experts=256,
        experts_per_token=8,
        moe_intermediate_size=2048,
        num_shared_experts=1,
        active_params=37_552_297_472,
        num_dense_layers=3,
    ),
    mla=MLA(kv_lora_rank=512, qk_rope_head_dim=64),
    fp8_block_size=128,
)

# R1 is a post-trained DeepSeek-V3: the same architecture and checkpoint format.
DEEPSEEK_R1: Final = dataclasses.replace(DEEPSEEK_V3, name="deepseek-r1", hf_id="deepseek-ai/DeepSeek-R1")

# A model small enough to plan onto any GPU, for tests and the local simulator engine.
TINY_TEST: Final = ModelArchitecture(
    name="tiny-test",
    hf_id="phalanx/tiny-test",
    num_layers=4,
    hidden_size=256,
    num_attention_heads=4,
    num_kv_heads=2,
    head_dim=64,
    intermediate_size=1024,
    vocab_size=1024,
    num_params=4_196_608,
    max_context=4096,
    tied_embeddings=True,
)

MODELS: Final[tuple[ModelArchitecture, ...]] = (
    LLAMA_3_1_8B_INSTRUCT,
    LLAMA_3_1_70B_INSTRUCT,
    LLAMA_3_3_70B_INSTRUCT,
    LLAMA_3_1_405B_INSTRUCT,
    QWEN2_5_72B_INSTRUCT,
    MIXTRAL_8X7B_INSTRUCT,
    QWEN3_235B_A22B,
    DEEPSEEK_V3,
    DEEPSEEK_R1,
    TINY_TEST,
)


def _index(models: tuple[ModelArchitecture, ...]) -> Mapping[str, ModelArchitecture]:
    index: dict[str, ModelArchitecture] = {}
    for model in models:
        for key in (model.name, model.hf_id, model.hf_id.rsplit("/", 1)[-1]):
            index.setdefault(normalise(key), model)
    return MappingProxyType(index)


_BY_KEY: Final = _index(MODELS)


class UnknownModelError(UnknownNameError):
    """A model name that is neither a catalog name nor a known Hugging Face id."""


def model_names() -> tuple[str, ...]:
    """The catalog names, in catalog order."""
    return tuple(model.name for model in MODELS)


def find_model(name: str) -> ModelArchitecture | None:
    """The model called `name` (catalog name or Hugging Face id, any case), or None."""
    return _BY_KEY.get(normalise(name))


def suggest_models(name: str) -> list[str]:
    """Catalog names close to `name`, best first, for "did you mean" messages."""
    return close_names(name, {key: model.name for key, model in _BY_KEY.items()})


def get_model(name: str) -> ModelArchitecture:
    """The model called `name`; raises UnknownModelError with close names when there is none."""
    model = find_model(name)
    if model is None:
        raise UnknownModelError("model", name, suggest_models(name), model_names())
    return model
