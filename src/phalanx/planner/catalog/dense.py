"""Dense models: every token runs through every weight.

Numbers are the ones each model's config.json publishes (layers, widths, heads, vocabulary, context,
biases, norms, sliding windows). `num_params` is the exact count those numbers give (`params.py`), which
`tests/unit/planner/test_catalog.py` recomputes on its own and checks against the published totals.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from phalanx.planner.types import ModelArchitecture

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

# A Llama 3.1 8B fine-tune: the same architecture and tokenizer.
DEEPSEEK_R1_DISTILL_LLAMA_8B: Final = dataclasses.replace(
    LLAMA_3_1_8B_INSTRUCT,
    name="deepseek-r1-distill-llama-8b",
    hf_id="deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
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

# Qwen2 models carry biases on the q, k and v projections. The configs allow 131072 tokens only with a
# YaRN rope_scaling override, so the context is the 32768 vLLM serves by default.
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
    qkv_bias=True,
)

QWEN2_5_CODER_7B_INSTRUCT: Final = ModelArchitecture(
    name="qwen2.5-coder-7b-instruct",
    hf_id="Qwen/Qwen2.5-Coder-7B-Instruct",
    num_layers=28,
    hidden_size=3584,
    num_attention_heads=28,
    num_kv_heads=4,
    head_dim=128,
    intermediate_size=18944,
    vocab_size=152064,
    num_params=7_615_616_512,
    max_context=32768,
    qkv_bias=True,
)

QWEN2_5_CODER_32B_INSTRUCT: Final = ModelArchitecture(
    name="qwen2.5-coder-32b-instruct",
    hf_id="Qwen/Qwen2.5-Coder-32B-Instruct",
    num_layers=64,
    hidden_size=5120,
    num_attention_heads=40,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=27648,
    vocab_size=152064,
    num_params=32_763_876_352,
    max_context=32768,
    qkv_bias=True,
)

# A Qwen2.5 14B fine-tune, served with its config's full 131072-token context.
DEEPSEEK_R1_DISTILL_QWEN_14B: Final = ModelArchitecture(
    name="deepseek-r1-distill-qwen-14b",
    hf_id="deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    num_layers=48,
    hidden_size=5120,
    num_attention_heads=40,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=13824,
    vocab_size=152064,
    num_params=14_770_033_664,
    max_context=131072,
    qkv_bias=True,
)


def _qwen3(
    size: str, layers: int, hidden: int, heads: int, intermediate: int, params: int
) -> ModelArchitecture:
    """Qwen3 dense: 8 KV heads of 128, q/k norms, 40960 tokens; the three smallest tie their embeddings."""
    return ModelArchitecture(
        name=f"qwen3-{size.lower()}",
        hf_id=f"Qwen/Qwen3-{size}",
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=intermediate,
        vocab_size=151936,
        num_params=params,
        max_context=40960,
        tied_embeddings=hidden <= 2560,
        qk_norm=True,
    )


QWEN3_0_6B: Final = _qwen3("0.6B", 28, 1024, 16, 3072, 596_049_920)
QWEN3_1_7B: Final = _qwen3("1.7B", 28, 2048, 16, 6144, 1_720_574_976)
QWEN3_4B: Final = _qwen3("4B", 36, 2560, 32, 9728, 4_022_468_096)
QWEN3_8B: Final = _qwen3("8B", 36, 4096, 32, 12288, 8_190_735_360)
QWEN3_14B: Final = _qwen3("14B", 40, 5120, 40, 17408, 14_768_307_200)
QWEN3_32B: Final = _qwen3("32B", 64, 5120, 64, 25600, 32_762_123_264)

# Gemma 3: a norm before and after both attention and MLP, q/k norms, tied embeddings, and five
# sliding-window layers (1024 tokens; 512 for 1B) for every layer that attends to the whole sequence.
# The 4B, 12B and 27B checkpoints carry a SigLIP vision encoder (27 layers of 1152, 896-pixel images in
# 14-pixel patches) and a projection into the text width: `extra_params`.
SIGLIP_896_PARAMS: Final = 416_866_032


def _gemma3(
    size: str, layers: int, hidden: int, heads: int, kv_heads: int, intermediate: int, params: int
) -> ModelArchitecture:
    vision = size != "1b"
    return ModelArchitecture(
        name=f"gemma-3-{size}-it",
        hf_id=f"google/gemma-3-{size}-it",
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=256 if size != "27b" else 128,
        intermediate_size=intermediate,
        vocab_size=262208 if vision else 262144,
        num_params=params,
        max_context=131072 if vision else 32768,
        tied_embeddings=True,
        qk_norm=True,
        norms_per_layer=4,
        sliding_window=1024 if vision else 512,
        sliding_window_layers=layers - layers // 6,
        extra_params=SIGLIP_896_PARAMS + 1152 * hidden + 1152 if vision else 0,
    )


GEMMA_3_1B_IT: Final = _gemma3("1b", 26, 1152, 4, 1, 6912, 999_885_952)
GEMMA_3_4B_IT: Final = _gemma3("4b", 34, 2560, 8, 4, 10240, 4_300_079_472)
GEMMA_3_12B_IT: Final = _gemma3("12b", 48, 3840, 16, 8, 15360, 12_187_325_040)
GEMMA_3_27B_IT: Final = _gemma3("27b", 62, 5376, 32, 16, 21504, 27_432_406_640)

PHI_4: Final = ModelArchitecture(
    name="phi-4",
    hf_id="microsoft/phi-4",
    num_layers=40,
    hidden_size=5120,
    num_attention_heads=40,
    num_kv_heads=10,
    head_dim=128,
    intermediate_size=17920,
    vocab_size=100352,
    num_params=14_659_507_200,
    max_context=16384,
)

PHI_4_MINI_INSTRUCT: Final = ModelArchitecture(
    name="phi-4-mini-instruct",
    hf_id="microsoft/Phi-4-mini-instruct",
    num_layers=32,
    hidden_size=3072,
    num_attention_heads=24,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=8192,
    vocab_size=200064,
    num_params=3_836_021_760,
    max_context=131072,
    tied_embeddings=True,
)

# Phi-3: the 4k configs set a 2047-token sliding window without saying which layers use it; vLLM's
# Llama-style attention applies a window only to layers a config lists as sliding, so every layer is
# planned as full attention (which can only overestimate the KV cache).
PHI_3_MINI_4K_INSTRUCT: Final = ModelArchitecture(
    name="phi-3-mini-4k-instruct",
    hf_id="microsoft/Phi-3-mini-4k-instruct",
    num_layers=32,
    hidden_size=3072,
    num_attention_heads=32,
    num_kv_heads=32,
    head_dim=96,
    intermediate_size=8192,
    vocab_size=32064,
    num_params=3_821_079_552,
    max_context=4096,
)
PHI_3_MINI_128K_INSTRUCT: Final = dataclasses.replace(
    PHI_3_MINI_4K_INSTRUCT,
    name="phi-3-mini-128k-instruct",
    hf_id="microsoft/Phi-3-mini-128k-instruct",
    max_context=131072,
)
PHI_3_5_MINI_INSTRUCT: Final = dataclasses.replace(
    PHI_3_MINI_128K_INSTRUCT, name="phi-3.5-mini-instruct", hf_id="microsoft/Phi-3.5-mini-instruct"
)
PHI_3_MEDIUM_4K_INSTRUCT: Final = ModelArchitecture(
    name="phi-3-medium-4k-instruct",
    hf_id="microsoft/Phi-3-medium-4k-instruct",
    num_layers=40,
    hidden_size=5120,
    num_attention_heads=40,
    num_kv_heads=10,
    head_dim=128,
    intermediate_size=17920,
    vocab_size=32064,
    num_params=13_960_238_080,
    max_context=4096,
)
PHI_3_MEDIUM_128K_INSTRUCT: Final = dataclasses.replace(
    PHI_3_MEDIUM_4K_INSTRUCT,
    name="phi-3-medium-128k-instruct",
    hf_id="microsoft/Phi-3-medium-128k-instruct",
    max_context=131072,
)

# Mistral 7B v0.3: 32768-token vocabulary, no sliding window (v0.1 had one).
MISTRAL_7B: Final = ModelArchitecture(
    name="mistral-7b",
    hf_id="mistralai/Mistral-7B-v0.3",
    num_layers=32,
    hidden_size=4096,
    num_attention_heads=32,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=14336,
    vocab_size=32768,
    num_params=7_248_023_552,
    max_context=32768,
)
MISTRAL_7B_INSTRUCT: Final = dataclasses.replace(
    MISTRAL_7B, name="mistral-7b-instruct", hf_id="mistralai/Mistral-7B-Instruct-v0.3"
)

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

DENSE_MODELS: Final[tuple[ModelArchitecture, ...]] = (
    LLAMA_3_1_8B_INSTRUCT,
    LLAMA_3_1_70B_INSTRUCT,
    LLAMA_3_3_70B_INSTRUCT,
    LLAMA_3_1_405B_INSTRUCT,
    DEEPSEEK_R1_DISTILL_LLAMA_8B,
    QWEN2_5_72B_INSTRUCT,
    QWEN2_5_CODER_7B_INSTRUCT,
    QWEN2_5_CODER_32B_INSTRUCT,
    DEEPSEEK_R1_DISTILL_QWEN_14B,
    QWEN3_0_6B,
    QWEN3_1_7B,
    QWEN3_4B,
    QWEN3_8B,
    QWEN3_14B,
    QWEN3_32B,
    GEMMA_3_1B_IT,
    GEMMA_3_4B_IT,
    GEMMA_3_12B_IT,
    GEMMA_3_27B_IT,
    PHI_4,
    PHI_4_MINI_INSTRUCT,
    PHI_3_MINI_4K_INSTRUCT,
    PHI_3_MINI_128K_INSTRUCT,
    PHI_3_5_MINI_INSTRUCT,
    PHI_3_MEDIUM_4K_INSTRUCT,
    PHI_3_MEDIUM_128K_INSTRUCT,
    MISTRAL_7B,
    MISTRAL_7B_INSTRUCT,
    TINY_TEST,
)
