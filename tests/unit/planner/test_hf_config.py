"""Reading a model's config.json: the architecture it describes, and every problem with its key and fix.

The fixtures under configs/ are our own files, written from each model's published architecture numbers.
Where the catalog has the same model, parsing its config must give exactly the catalog's entry.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from phalanx.planner import get_model
from phalanx.planner.hf_config import ConfigProblem, ParsedConfig, architecture_from_config

CONFIGS = Path(__file__).parent / "configs"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFIGS / f"{name}.json").read_text())
    return data


def parse(config: Any, name: str = "acme/model") -> ParsedConfig:
    return architecture_from_config(config, name)


def problems(config: Any) -> dict[tuple[str | int, ...], ConfigProblem]:
    return {problem.path: problem for problem in parse(config).problems}


@pytest.mark.parametrize(
    ("fixture", "catalog"),
    [
        ("llama-3.1-8b", "llama-3.1-8b-instruct"),
        ("phi-4", "phi-4"),
        ("qwen2.5-72b", "qwen2.5-72b-instruct"),
        ("mixtral-8x7b", "mixtral-8x7b-instruct"),
        ("qwen3-30b-a3b", "qwen3-30b-a3b"),
        ("gpt-oss-120b", "gpt-oss-120b"),
        ("deepseek-v3", "deepseek-v3"),
        ("gemma-3-27b-it", "gemma-3-27b-it"),
    ],
)
def test_a_config_gives_the_catalog_entry_of_the_same_model(fixture: str, catalog: str) -> None:
    expected = get_model(catalog)
    parsed = parse(load(fixture), expected.hf_id)
    assert parsed.problems == ()
    assert parsed.model == dataclasses.replace(expected, name=expected.hf_id)


def test_dense_config_reads_every_number() -> None:
    model = parse(load("llama-3.1-8b"), "meta-llama/Llama-3.1-8B-Instruct").model
    assert model is not None
    assert (model.num_layers, model.hidden_size, model.num_attention_heads, model.num_kv_heads) == (
        32,
        4096,
        32,
        8,
    )
    assert (model.head_dim, model.intermediate_size, model.vocab_size, model.max_context) == (
        128,
        14336,
        128256,
        131072,
    )
    assert (model.native_dtype, model.tied_embeddings, model.moe, model.mla) == ("bf16", False, None, None)
    assert model.num_params == 8_030_261_248
    assert (model.name, model.hf_id) == ("meta-llama/Llama-3.1-8B-Instruct",) * 2


def test_head_dim_is_derived_when_absent_and_read_when_given() -> None:
    phi = parse(load("phi-4")).model
    assert phi is not None and phi.head_dim == 5120 // 40
    qwen = parse(load("qwen3-30b-a3b")).model
    assert qwen is not None and qwen.head_dim == 128  # 32 heads x 128 = 4096, wider than hidden 2048


def test_moe_configs_in_each_family_spelling() -> None:
    mixtral, qwen, gpt, deepseek = (
        parse(load(name)).model for name in ("mixtral-8x7b", "qwen3-30b-a3b", "gpt-oss-120b", "deepseek-v3")
    )
    assert mixtral is not None and mixtral.moe is not None
    assert (mixtral.moe.num_experts, mixtral.moe.experts_per_token, mixtral.moe.moe_intermediate_size) == (
        8,
        2,
        14336,
    )
    assert qwen is not None and qwen.moe is not None
    assert (qwen.moe.num_experts, qwen.moe.moe_intermediate_size, qwen.moe.num_dense_layers) == (128, 768, 0)
    assert qwen.qk_norm
    assert gpt is not None and gpt.moe is not None
    assert (gpt.moe.num_experts, gpt.moe.experts_per_token, gpt.moe.router_bias, gpt.moe.expert_bias) == (
        128,
        4,
        True,
        True,
    )
    assert (gpt.qkv_bias, gpt.o_bias, gpt.attention_sinks) == (True, True, True)
    assert deepseek is not None and deepseek.moe is not None and deepseek.mla is not None
    assert (deepseek.moe.num_shared_experts, deepseek.moe.num_dense_layers, deepseek.moe.router_bias) == (
        1,
        3,
        True,
    )
    assert (deepseek.mla.kv_lora_rank, deepseek.mla.qk_rope_head_dim, deepseek.mla.q_lora_rank) == (
        512,
        64,
        1536,
    )


def test_qwen_dense_layers_from_mlp_only_layers_and_sparse_step() -> None:
    config = load("qwen3-30b-a3b") | {"mlp_only_layers": [0, 1], "decoder_sparse_step": 2}
    model = parse(config).model
    assert model is not None and model.moe is not None
    # layers 0 and 1 are listed; of the others, every odd-numbered one (i + 1 not a multiple of 2) is dense
    assert model.moe.num_dense_layers == 2 + 23


def test_quantisation_formats() -> None:
    deepseek = parse(load("deepseek-v3")).model
    assert deepseek is not None and (deepseek.native_dtype, deepseek.fp8_block_size) == ("fp8", 128)
    gpt = parse(load("gpt-oss-120b")).model
    assert gpt is not None and gpt.native_dtype == "mxfp4"
    compressed = {
        "quant_method": "compressed-tensors",
        "format": "float-quantized",
        "config_groups": {
            "group_0": {"weights": {"num_bits": 8, "type": "float", "block_structure": [128, 128]}}
        },
    }
    model = parse(load("llama-3.1-8b") | {"quantization_config": compressed}).model
    assert model is not None and (model.native_dtype, model.fp8_block_size) == ("fp8", 128)
    newer = {key: value for key, value in load("llama-3.1-8b").items() if key != "torch_dtype"} | {
        "dtype": "float16"
    }
    fp16 = parse(newer).model
    assert fp16 is not None and fp16.native_dtype == "fp16"


def test_sliding_windows_only_for_layers_the_config_names() -> None:
    gpt = parse(load("gpt-oss-120b")).model
    assert gpt is not None and (gpt.sliding_window, gpt.sliding_window_layers) == (128, 18)
    gemma = parse(load("gemma-3-27b-it")).model
    assert gemma is not None and (gemma.sliding_window, gemma.full_attention_layers) == (1024, 10)
    # Mistral v0.1 style: a window, no layer list: full attention everywhere, with a warning
    found = problems(load("llama-3.1-8b") | {"model_type": "mistral", "sliding_window": 4096})
    warning = found[("sliding_window",)]
    assert warning.severity == "warning"
    assert "planned as full attention" in warning.message
    model = parse(load("llama-3.1-8b") | {"model_type": "mistral", "sliding_window": 4096}).model
    assert model is not None and model.sliding_window is None


def test_multimodal_wrappers_read_the_text_config_and_count_the_encoder() -> None:
    gemma = parse(load("gemma-3-27b-it")).model
    assert gemma is not None
    assert (gemma.hidden_size, gemma.vocab_size, gemma.tied_embeddings, gemma.norms_per_layer) == (
        5376,
        262208,
        True,
        4,
    )
    assert gemma.extra_params == 416_866_032 + 1152 * 5376 + 1152  # SigLIP + norm and projection
    mistral = parse(load("mistral-small-3.1-24b")).model
    assert mistral is not None
    # text: 40 layers of (q 5120x4096, k/v 5120x1024, o 4096x5120, MLP 3 x 5120 x 32768, two norms),
    # untied 131072 x 5120 embedding and head, final norm
    layer = 5120 * 4096 * 2 + 5120 * 1024 * 2 + 3 * 5120 * 32768 + 2 * 5120
    text = 40 * layer + 2 * 131072 * 5120 + 5120
    # Pixtral: unbiased 14x14 patch convolution, pre-norm, 24 layers of attention + gated MLP + two norms;
    # projector: norm, 2x2 patch merger, two projections into the text width
    vision = 3 * 14 * 14 * 1024 + 1024 + 24 * (4 * 1024 * 1024 + 3 * 1024 * 4096 + 2 * 1024)
    projector = 1024 + 4 * 1024 * 1024 + 1024 * 5120 + 5120 * 5120
    assert mistral.extra_params == vision + projector
    assert mistral.num_params == text + vision + projector
    assert round(mistral.num_params / 1e9) == 24  # "24B" as published


def test_every_missing_key_is_reported_at_once_with_its_fix() -> None:
    config = {"model_type": "llama", "hidden_size": 4096, "torch_dtype": "bfloat16"}
    parsed = parse(config)
    assert parsed.model is None
    missing = {p.path[-1]: p for p in parsed.errors}
    assert set(missing) == {
        "num_hidden_layers",
        "num_attention_heads",
        "vocab_size",
        "max_position_embeddings",
        "intermediate_size",
    }
    layers = missing["num_hidden_layers"]
    assert layers.message == "is missing"
    assert layers.fix == "add num_hidden_layers (decoder layers), from the model's published config.json"


def test_missing_key_of_a_wrapped_model_points_into_text_config() -> None:
    config = copy.deepcopy(load("gemma-3-27b-it"))
    del config["text_config"]["vocab_size"]
    (error,) = parse(config).errors
    assert error.path == ("text_config", "vocab_size")
    assert error.fix == (
        "add vocab_size (tokens in the vocabulary) to text_config, from the model's published config.json"
    )


@pytest.mark.parametrize("bad", ["32", 32.0, True, 0, -4, None])
def test_a_malformed_number_names_its_key_and_value(bad: Any) -> None:
    parsed = parse(load("llama-3.1-8b") | {"num_hidden_layers": bad})
    (error,) = parsed.errors
    assert error.path == ("num_hidden_layers",)
    if bad is None:
        assert error.message == "is missing"
    else:
        assert error.message == "must be a whole number from 1 to 10000 (decoder layers)"
        assert error.value == bad


def test_inconsistent_numbers_are_errors() -> None:
    found = problems(load("phi-4") | {"num_attention_heads": 48})
    assert "hidden_size 5120 / num_attention_heads 48 is not a whole number" in found[("head_dim",)].message
    found = problems(load("llama-3.1-8b") | {"num_key_value_heads": 5})
    assert found[("num_key_value_heads",)].message == "must divide num_attention_heads 32"
    short = load("gpt-oss-120b")
    short["layer_types"] = short["layer_types"][:10]
    assert "lists 10 layers, not num_hidden_layers 36" in problems(short)[("layer_types",)].message


def test_unmodelled_formats_and_architectures_are_refused() -> None:
    awq = problems(load("llama-3.1-8b") | {"quantization_config": {"quant_method": "awq", "bits": 4}})
    error = awq[("quantization_config", "quant_method")]
    assert (error.severity, error.value) == ("error", "awq")
    assert "fp8 and mxfp4 are" in error.message
    mamba = problems(load("llama-3.1-8b") | {"model_type": "nemotron_h"})
    assert "hybrid Mamba layers" in mamba[("model_type",)].message
    assert parse(load("llama-3.1-8b") | {"model_type": "nemotron_h"}).model is None


def test_assumptions_are_warnings_and_the_model_is_still_planned() -> None:
    unknown = parse(load("llama-3.1-8b") | {"model_type": "brand_new"})
    assert unknown.model is not None
    (warning,) = unknown.problems
    assert (warning.path, warning.severity) == (("model_type",), "warning")
    assert "Llama-style decoder" in warning.message
    wide = parse(load("llama-3.1-8b") | {"torch_dtype": "float32"})
    assert wide.model is not None and wide.model.native_dtype == "bf16"
    assert "16 bits" in wide.problems[0].message
    odd_vision = load("gemma-3-27b-it")
    odd_vision["vision_config"]["model_type"] = "some_vit"
    estimated = parse(odd_vision)
    assert estimated.model is not None
    assert [p.path for p in estimated.problems] == [("vision_config",)]


def test_a_config_that_is_not_an_object() -> None:
    (error,) = parse(["not", "a", "mapping"]).problems
    assert (error.path, error.message) == ((), "is not a JSON object")
