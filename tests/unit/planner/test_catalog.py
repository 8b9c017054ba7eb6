"""The catalogs: exact architecture numbers, lookups, and the GPU memory convention."""

from __future__ import annotations

import pytest

from phalanx.planner import (
    GPU_PRODUCTS,
    INSTANCE_TYPES,
    MODELS,
    GiB,
    ModelArchitecture,
    UnknownInstanceTypeError,
    UnknownModelError,
    count_active_parameters,
    count_parameters,
    find_model,
    get_gpu_product,
    get_instance_type,
    get_model,
    model_names,
    parse_memory,
    shape_for_instance,
    shape_from_memory,
    suggest_models,
)
from phalanx.planner.memory import weight_bytes_per_gpu


def attention_params(m: ModelArchitecture) -> int:
    """Q, K, V and O projections of one layer (MLA: DeepSeek-V3's low-rank projections), with their extras."""
    h, heads = m.hidden_size, m.num_attention_heads
    if m.mla is not None:
        mla = m.mla
        assert mla.q_lora_rank is not None  # every MLA model of the catalog compresses its queries
        q = h * mla.q_lora_rank + mla.q_lora_rank + mla.q_lora_rank * heads * (mla.qk_nope_head_dim + 64)
        kv = h * (mla.kv_lora_rank + 64) + mla.kv_lora_rank
        kv += mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim)
        return q + kv + heads * mla.v_head_dim * h
    q_width = heads * m.head_dim
    kv_width = m.num_kv_heads * m.head_dim
    params = 2 * h * q_width + 2 * h * kv_width
    params += (q_width + 2 * kv_width) * m.qkv_bias  # Qwen2 and gpt-oss biases
    params += h * m.o_bias
    params += 2 * m.head_dim * m.qk_norm  # Qwen3 and Gemma 3 q/k RMS norms over head_dim
    params += heads * m.attention_sinks  # gpt-oss: one sink logit per head
    return params


def ffn_params(m: ModelArchitecture, width: int, bias: bool) -> int:
    """A gated MLP (SwiGLU/GeGLU) of `width`, with gate/up and down biases when `bias`."""
    return 3 * m.hidden_size * width + (2 * width + m.hidden_size if bias else 0)


def recomputed_params(m: ModelArchitecture) -> tuple[int, int]:
    """(total, active) from the dimensions: gated FFNs, norms per layer, final norm, embeddings, extras."""
    h = m.hidden_size
    edges = m.vocab_size * h * (1 if m.tied_embeddings else 2) + h + m.extra_params
    norms = m.norms_per_layer * h
    dense_layer = attention_params(m) + ffn_params(m, m.intermediate_size, m.mlp_bias) + norms
    if m.moe is None:
        total = m.num_layers * dense_layer + edges
        return total, total
    moe = m.moe
    expert = ffn_params(m, moe.moe_intermediate_size, moe.expert_bias)
    router = h * moe.num_experts + moe.num_experts * moe.router_bias
    common = attention_params(m) + router + norms + moe.num_shared_experts * expert
    moe_layers = m.num_layers - moe.num_dense_layers
    total = moe.num_dense_layers * dense_layer + moe_layers * (common + moe.num_experts * expert) + edges
    active = (
        moe.num_dense_layers * dense_layer + moe_layers * (common + moe.experts_per_token * expert) + edges
    )
    return total, active


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_parameter_counts_follow_from_the_dimensions(model: ModelArchitecture) -> None:
    total, active = recomputed_params(model)
    assert model.num_params == total == count_parameters(model)
    if model.moe is not None:
        assert model.moe.active_params == active == count_active_parameters(model)


def test_published_totals() -> None:
    billions = {m.name: round(m.num_params / 1e9, 2) for m in MODELS}
    assert billions["llama-3.1-8b-instruct"] == 8.03
    assert billions["llama-3.3-70b-instruct"] == 70.55
    assert billions["llama-3.1-405b-instruct"] == 405.85
    assert billions["qwen2.5-72b-instruct"] == 72.71
    assert billions["mixtral-8x7b-instruct"] == 46.70
    assert billions["qwen3-235b-a22b"] == 235.09
    assert billions["deepseek-r1"] == 671.03
    deepseek_moe = get_model("deepseek-v3").moe
    assert deepseek_moe is not None
    assert round(deepseek_moe.active_params / 1e9, 2) == 37.55
    # gpt-oss model card: 116.8B and 20.9B in all; 5.1B and 3.6B active, counting the LM head but not the
    # embedding lookup.
    for name, total, active in (("gpt-oss-120b", 116.83, 5.13), ("gpt-oss-20b", 20.91, 3.61)):
        model = get_model(name)
        assert model.moe is not None
        embedding = model.vocab_size * model.hidden_size
        assert (billions[name], round((model.moe.active_params - embedding) / 1e9, 2)) == (total, active)
    # Qwen3 model cards: total and non-embedding parameters (one matrix when tied, two when not).
    qwen3 = {"0.6b": (0.6, 0.44), "1.7b": (1.7, 1.4), "4b": (4.0, 3.6), "8b": (8.2, 6.95)}
    qwen3 |= {"14b": (14.8, 13.2), "32b": (32.8, 31.2)}
    for size, (total, body) in qwen3.items():
        model = get_model(f"qwen3-{size}")
        embeddings = model.vocab_size * model.hidden_size * (1 if model.tied_embeddings else 2)
        digits = 2 if total < 1 or body == 6.95 else 1
        assert round(model.num_params / 1e9, 1) == total
        assert round((model.num_params - embeddings) / 1e9, digits) == body
    moe = get_model("qwen3-30b-a3b").moe
    assert moe is not None
    assert (billions["qwen3-30b-a3b"], round(moe.active_params / 1e9, 1)) == (30.53, 3.4)
    # Mistral Large 3: 673B language model (ours 671.05B: the expert layout is assumed), 2.5B encoder.
    large = get_model("mistral-large-3-675b-instruct")
    assert abs((large.num_params - large.extra_params) / 673e9 - 1) < 0.005


# KAITO's catalog lists each checkpoint's size in GiB; bf16 checkpoints are 2 bytes per parameter.
KAITO_BF16_SIZES_GIB = {
    "llama-3.1-8b-instruct": 14.96,
    "llama-3.3-70b-instruct": 131.42,
    "deepseek-r1-distill-llama-8b": 14.96,
    "deepseek-r1-distill-qwen-14b": 27.51,
    "qwen2.5-coder-7b-instruct": 14.19,
    "qwen2.5-coder-32b-instruct": 61.03,
    "phi-4": 27.31,
    "phi-4-mini-instruct": 7.15,
    "phi-3-mini-4k-instruct": 7.12,
    "phi-3-medium-4k-instruct": 26.00,
    "mistral-7b": 13.50,
    "gemma-3-4b-it": 8.01,
    "gemma-3-27b-it": 51.10,
}


@pytest.mark.parametrize(("name", "gib"), KAITO_BF16_SIZES_GIB.items())
def test_bf16_checkpoints_weigh_what_kaito_lists(name: str, gib: float) -> None:
    """An independent check of the architecture numbers, the vision encoders included."""
    assert round(get_model(name).num_params * 2 / GiB, 2) == pytest.approx(gib, abs=0.011)


@pytest.mark.parametrize(("name", "gib"), [("gpt-oss-120b", 60.77), ("gpt-oss-20b", 12.9)])
def test_mxfp4_checkpoints_weigh_what_kaito_lists(name: str, gib: float) -> None:
    """KAITO's earlier catalog sizes of the mxfp4 checkpoints: experts at 17/32 byte, the rest bf16."""
    model = get_model(name)
    assert weight_bytes_per_gpu(model, "mxfp4", tp=1, pp=1) / GiB == pytest.approx(gib, rel=0.01)


def test_context_limits() -> None:
    limits = {m.name: m.max_context for m in MODELS}
    assert limits["llama-3.1-8b-instruct"] == limits["llama-3.3-70b-instruct"] == 131072
    assert limits["qwen2.5-72b-instruct"] == limits["mixtral-8x7b-instruct"] == 32768
    assert limits["qwen3-235b-a22b"] == limits["qwen3-8b"] == limits["qwen3-30b-a3b"] == 40960
    assert limits["deepseek-v3"] == limits["deepseek-r1"] == limits["deepseek-r1-0528"] == 163840
    assert limits["gpt-oss-120b"] == limits["gemma-3-27b-it"] == limits["phi-4-mini-instruct"] == 131072
    assert limits["gemma-3-1b-it"] == 32768
    assert limits["phi-4"] == 16384
    assert limits["phi-3-mini-4k-instruct"] == 4096
    assert limits["mistral-large-3-675b-instruct"] == 262144
    assert limits["tiny-test"] == 4096


def test_sliding_window_layers() -> None:
    # gpt-oss alternates sliding (128 tokens) and full layers; Gemma 3 has one full layer in six.
    assert (get_model("gpt-oss-120b").sliding_window, get_model("gpt-oss-120b").full_attention_layers) == (
        128,
        18,
    )
    assert get_model("gpt-oss-20b").full_attention_layers == 12
    assert [get_model(f"gemma-3-{size}-it").full_attention_layers for size in ("1b", "4b", "12b", "27b")] == [
        4,
        5,
        8,
        10,
    ]
    assert get_model("gemma-3-1b-it").sliding_window == 512
    assert get_model("llama-3.1-8b-instruct").full_attention_layers == 32


# KAITO's preset names (its supported_models list and the repositories of its model catalog) that
# Phalanx plans, and the catalog model each must resolve to.
KAITO_PRESETS = {
    "llama-3.1-8b-instruct": "llama-3.1-8b-instruct",
    "llama-3.3-70b-instruct": "llama-3.3-70b-instruct",
    "deepseek-r1-0528": "deepseek-r1-0528",
    "deepseek-v3-0324": "deepseek-v3-0324",
    "mistral-7b": "mistral-7b",
    "mistral-7b-instruct": "mistral-7b-instruct",
    "mistral-large-3-675b-instruct": "mistral-large-3-675b-instruct",
    "phi-3-mini-4k-instruct": "phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct": "phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct": "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct": "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct": "phi-3.5-mini-instruct",
    "phi-4-mini-instruct": "phi-4-mini-instruct",
    "phi-4": "phi-4",
    "qwen2.5-coder-7b-instruct": "qwen2.5-coder-7b-instruct",
    "qwen2.5-coder-32b-instruct": "qwen2.5-coder-32b-instruct",
    "deepseek-r1-distill-qwen-14b": "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-llama-8b": "deepseek-r1-distill-llama-8b",
    "gemma-3-4b-instruct": "gemma-3-4b-it",
    "gemma-3-27b-instruct": "gemma-3-27b-it",
    "gpt-oss-20b": "gpt-oss-20b",
    "gpt-oss-120b": "gpt-oss-120b",
    # catalog repositories, in KAITO's spelling (its legacy names map to the lower-case form)
    "microsoft/phi-4": "phi-4",
    "microsoft/Phi-4-mini-instruct": "phi-4-mini-instruct",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B": "deepseek-r1-distill-llama-8b",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": "deepseek-r1-distill-qwen-14b",
    "microsoft/Phi-3-mini-4k-instruct": "phi-3-mini-4k-instruct",
    "microsoft/Phi-3-mini-128k-instruct": "phi-3-mini-128k-instruct",
    "microsoft/Phi-3-medium-4k-instruct": "phi-3-medium-4k-instruct",
    "microsoft/Phi-3-medium-128k-instruct": "phi-3-medium-128k-instruct",
    "microsoft/Phi-3.5-mini-instruct": "phi-3.5-mini-instruct",
    "Qwen/Qwen2.5-Coder-7B-Instruct": "qwen2.5-coder-7b-instruct",
    "Qwen/Qwen2.5-Coder-32B-Instruct": "qwen2.5-coder-32b-instruct",
    "openai/gpt-oss-20b": "gpt-oss-20b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b-instruct",
    "meta-llama/llama-3.3-70b-instruct": "llama-3.3-70b-instruct",
    "mistralai/Mistral-7B-v0.3": "mistral-7b",
    "mistralai/mistral-7b-instruct-v0.3": "mistral-7b-instruct",
    "google/gemma-3-4b-it": "gemma-3-4b-it",
    "google/gemma-3-27b-it": "gemma-3-27b-it",
    "deepseek-ai/deepseek-r1-0528": "deepseek-r1-0528",
    "deepseek-ai/DeepSeek-V3-0324": "deepseek-v3-0324",
    "mistralai/Mistral-Large-3-675B-Instruct-2512": "mistral-large-3-675b-instruct",
    # KAITO's generated preset names are the repository's last part, lower-cased
    "mistral-large-3-675b-instruct-2512": "mistral-large-3-675b-instruct",
}

# KAITO presets Phalanx does not plan by name (their config.json can still be planned with --model-config
# where the architecture is one the parser models): the reason for each is in docs/planner.md.
KAITO_UNSUPPORTED = (
    "falcon-7b",
    "falcon-40b-instruct",
    "phi-2",
    "ministral-3-8b-instruct",
    "mistralai/Ministral-3-14B-Instruct-2512",
    "Qwen/Qwen3-8B-AWQ",
    "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
    "google/gemma-4-31B-it",
    "Qwen/Qwen3.5-9B",
    "moonshotai/Kimi-K2.5",
    "deepseek-ai/DeepSeek-V3.2",
)


@pytest.mark.parametrize(("preset", "name"), KAITO_PRESETS.items())
def test_kaito_preset_names_resolve_to_the_catalog(preset: str, name: str) -> None:
    model = find_model(preset)
    assert model is not None
    assert model.name == name


@pytest.mark.parametrize("preset", KAITO_UNSUPPORTED)
def test_unsupported_kaito_presets_are_not_guessed(preset: str) -> None:
    assert find_model(preset) is None


def test_deepseek_architecture() -> None:
    m = get_model("deepseek-r1")
    assert m.mla is not None
    assert (m.mla.q_lora_rank, m.mla.qk_nope_head_dim, m.mla.v_head_dim) == (1536, 128, 128)
    assert m.native_dtype == "fp8"
    assert m.fp8_block_size == 128
    assert m.num_layers == 61
    assert m.intermediate_size == 18432
    assert m.mla is not None
    assert (m.mla.kv_lora_rank, m.mla.qk_rope_head_dim) == (512, 64)
    assert m.moe is not None
    assert (m.moe.num_experts, m.moe.experts_per_token, m.moe.moe_intermediate_size) == (256, 8, 2048)
    assert (m.moe.num_shared_experts, m.moe.num_dense_layers) == (1, 3)


def test_names_are_unique() -> None:
    assert len(set(model_names())) == len(MODELS)
    assert len({m.hf_id.lower() for m in MODELS}) == len(MODELS)
    assert len({i.name.lower() for i in INSTANCE_TYPES}) == len(INSTANCE_TYPES)


@pytest.mark.parametrize(
    "name",
    [
        "llama-3.1-8b-instruct",
        "LLAMA-3.1-8B-INSTRUCT",
        " llama-3.1-8b-instruct ",
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/llama-3.1-8b-instruct",
        "Llama-3.1-8B-Instruct",
    ],
)
def test_model_lookup_by_name_or_hf_id_any_case(name: str) -> None:
    assert get_model(name).name == "llama-3.1-8b-instruct"


def test_unknown_model_is_a_key_error_with_close_names() -> None:
    assert find_model("llama-3-70b") is None
    with pytest.raises(KeyError) as caught:
        get_model("llama-3.3-70b")
    error = caught.value
    assert isinstance(error, UnknownModelError)
    assert "llama-3.3-70b-instruct" in error.suggestions
    assert "did you mean" in str(error)
    assert suggest_models("deepsek-r1")[0] == "deepseek-r1"


def test_unknown_name_without_close_names_lists_the_catalog() -> None:
    with pytest.raises(UnknownModelError) as caught:
        get_model("zzzzzz")
    assert "tiny-test" in str(caught.value)


def test_instances_use_catalog_products() -> None:
    for instance in INSTANCE_TYPES:
        assert instance.gpu in GPU_PRODUCTS
        assert instance.gpu_count in (1, 2, 4, 8)
        assert instance.cloud in ("azure", "aws", "gcp")


@pytest.mark.parametrize(
    ("name", "gpus", "gib", "product"),
    [
        ("Standard_NV36ads_A10_v5", 1, 24, "A10"),
        ("Standard_NC80adis_H100_v5", 2, 94, "H100-NVL-94GB"),
        ("standard_nc40ads_h100_v5", 1, 94, "H100-NVL-94GB"),
        ("Standard_ND96asr_v4", 8, 40, "A100-40GB"),
        ("Standard_ND96asr_A100_v4", 8, 40, "A100-40GB"),  # KAITO's spelling
        ("Standard_ND96amsr_A100_v4", 8, 80, "A100-80GB"),
        ("Standard_ND96isr_H100_v5", 8, 80, "H100-80GB"),
        ("Standard_ND96isr_H200_v5", 8, 141, "H200-141GB"),
        ("p4d.24xlarge", 8, 40, "A100-40GB"),
        ("p4de.24xlarge", 8, 80, "A100-80GB"),
        ("P5.48XLARGE", 8, 80, "H100-80GB"),
        ("p5en.48xlarge", 8, 141, "H200-141GB"),
        ("g5.48xlarge", 8, 24, "A10G"),
        ("g6.12xlarge", 4, 24, "L4"),
        ("g6e.48xlarge", 8, 48, "L40S"),
        ("a2-highgpu-8g", 8, 40, "A100-40GB"),
        ("a3-megagpu-8g", 8, 80, "H100-80GB"),
        ("a3-ultragpu-8g", 8, 141, "H200-141GB"),
        ("a4-highgpu-8g", 8, 180, "B200-180GB"),
    ],
)
def test_instance_shapes(name: str, gpus: int, gib: int, product: str) -> None:
    shape = shape_for_instance(name)
    assert (shape.gpus_per_node, shape.gpu_memory_bytes, shape.gpu_product) == (gpus, gib * GiB, product)
    assert shape.instance_type == get_instance_type(name).name


def test_alias_resolves_to_the_canonical_name() -> None:
    assert shape_for_instance("Standard_ND96asr_A100_v4").instance_type == "Standard_ND96asr_v4"


def test_unknown_instance_suggests_close_names() -> None:
    with pytest.raises(UnknownInstanceTypeError) as caught:
        shape_for_instance("Standard_ND96isr_H100")
    assert caught.value.suggestions[0] == "Standard_ND96isr_H100_v5"
    with pytest.raises(KeyError):
        get_gpu_product("H300")


def test_nvlink_flags() -> None:
    assert get_gpu_product("h100-80gb").nvlink
    assert get_gpu_product("H100-NVL-94GB").nvlink
    assert not get_gpu_product("L40S").nvlink
    assert not get_gpu_product("A10").nvlink


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80Gi", 80 * GiB),
        ("80GiB", 80 * GiB),
        ("80GB", 80 * GiB),  # marketed GB are counted as GiB
        ("94G", 94 * GiB),
        ("94g", 94 * GiB),
        ("81920Mi", 80 * GiB),
        ("1.5Ti", 1536 * GiB),
        ("1024", 1024),
        (" 24 GiB ", 24 * GiB),
    ],
)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "80 GX", "-8Gi", "0Gi", "1.5", "80i", "eighty"])
def test_parse_memory_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="GPU memory"):
        parse_memory(text)


def test_shape_from_memory() -> None:
    shape = shape_from_memory(8, "141Gi", "H200-141GB")
    assert (shape.gpus_per_node, shape.gpu_memory_bytes, shape.gpu_product, shape.instance_type) == (
        8,
        141 * GiB,
        "H200-141GB",
        None,
    )
    with pytest.raises(ValueError, match="at least 1"):
        shape_from_memory(0, "80Gi")
