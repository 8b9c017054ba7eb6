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


def attention_params(m: ModelArchitecture) -> int:
    """Q, K, V and O projections of one layer (MLA: DeepSeek-V3's low-rank projections)."""
    h = m.hidden_size
    if m.mla is not None:  # q_lora_rank 1536; qk_nope 128 + qk_rope 64 per head; v 128 per head
        q = h * 1536 + 1536 + 1536 * m.num_attention_heads * (128 + 64)
        kv = h * (512 + 64) + 512 + 512 * m.num_attention_heads * (128 + 128)
        return q + kv + m.num_attention_heads * 128 * h
    q_width = m.num_attention_heads * m.head_dim
    kv_width = m.num_kv_heads * m.head_dim
    params = 2 * h * q_width + 2 * h * kv_width
    if m.name == "qwen2.5-72b-instruct":  # QKV biases
        params += q_width + 2 * kv_width
    if m.name == "qwen3-235b-a22b":  # q and k RMS norms over head_dim
        params += 2 * m.head_dim
    return params


def recomputed_params(m: ModelArchitecture) -> tuple[int, int]:
    """(total, active) from the dimensions: SwiGLU FFNs, two norms per layer, final norm, embeddings."""
    h = m.hidden_size
    edges = m.vocab_size * h * (1 if m.tied_embeddings else 2) + h
    dense_layer = attention_params(m) + 3 * h * m.intermediate_size + 2 * h
    if m.moe is None:
        total = m.num_layers * dense_layer + edges
        return total, total
    moe = m.moe
    expert = 3 * h * moe.moe_intermediate_size
    router = h * moe.num_experts + (moe.num_experts if m.mla is not None else 0)  # + DeepSeek's router bias
    common = attention_params(m) + router + 2 * h + moe.num_shared_experts * expert
    moe_layers = m.num_layers - moe.num_dense_layers
    total = moe.num_dense_layers * dense_layer + moe_layers * (common + moe.num_experts * expert) + edges
    active = (
        moe.num_dense_layers * dense_layer + moe_layers * (common + moe.experts_per_token * expert) + edges
    )
    return total, active


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_parameter_counts_follow_from_the_dimensions(model: ModelArchitecture) -> None:
    total, active = recomputed_params(model)
    assert model.num_params == total
    if model.moe is not None:
        assert model.moe.active_params == active


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


def test_context_limits() -> None:
    limits = {m.name: m.max_context for m in MODELS}
    assert limits["llama-3.1-8b-instruct"] == limits["llama-3.3-70b-instruct"] == 131072
    assert limits["qwen2.5-72b-instruct"] == limits["mixtral-8x7b-instruct"] == 32768
    assert limits["qwen3-235b-a22b"] == 40960
    assert limits["deepseek-v3"] == limits["deepseek-r1"] == 163840
    assert limits["tiny-test"] == 4096


def test_deepseek_architecture() -> None:
    m = get_model("deepseek-r1")
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
