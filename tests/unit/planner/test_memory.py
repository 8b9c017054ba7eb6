"""The memory formulas one at a time, on numbers small enough to check in your head."""

from __future__ import annotations

import dataclasses

import pytest

from phalanx.planner import GiB, get_model
from phalanx.planner.memory import (
    bytes_per_param,
    decoder_params,
    dense_layer_deficit,
    edge_params,
    fits,
    kv_bytes_per_token,
    kv_cache_tokens,
    kv_heads_per_gpu,
    memory_budget,
    needed_bytes,
    runtime_overhead_bytes,
    stage_decoder_params,
    stage_layers,
    usable_bytes,
    weight_bytes_per_gpu,
)

TINY = get_model("tiny-test")  # 4 layers, hidden 256, 4 heads, 2 KV heads, head_dim 64, vocab 1024, tied
LLAMA_8B = get_model("llama-3.1-8b-instruct")


def test_bytes_per_param() -> None:
    assert (bytes_per_param("bf16"), bytes_per_param("fp16"), bytes_per_param("fp8")) == (2, 2, 1)


@pytest.mark.parametrize(("layers", "pp", "heaviest"), [(80, 1, 80), (80, 3, 27), (126, 2, 63), (61, 2, 31)])
def test_stage_layers_round_up(layers: int, pp: int, heaviest: int) -> None:
    assert stage_layers(layers, pp) == heaviest


def test_edges_on_the_heaviest_stage() -> None:
    matrix = 128256 * 4096
    assert edge_params(LLAMA_8B, pp=1) == 2 * matrix  # embedding and LM head on the only stage
    assert edge_params(LLAMA_8B, pp=2) == matrix  # one of them on each end stage
    assert edge_params(TINY, pp=1) == 1024 * 256  # tied: one matrix
    assert decoder_params(LLAMA_8B) == 8_030_261_248 - 2 * matrix


def test_decoder_split_evenly_when_layers_are_alike() -> None:
    body = decoder_params(LLAMA_8B)
    assert stage_decoder_params(LLAMA_8B, 1) == body
    assert stage_decoder_params(LLAMA_8B, 2) == -(-body * 16 // 32)
    assert stage_decoder_params(LLAMA_8B, 3) == -(-body * 11 // 32)


def test_dense_leading_layers_make_moe_stages_heavier_than_average() -> None:
    deepseek = get_model("deepseek-v3")
    # 257 experts (256 routed + 1 shared) + the router and its 256 biases, less the dense FFN
    assert dense_layer_deficit(deepseek) == 257 * 3 * 7168 * 2048 + 7168 * 256 + 256 - 3 * 7168 * 18432
    average = decoder_params(deepseek) * 31 // 61
    assert stage_decoder_params(deepseek, 2) > average
    assert dense_layer_deficit(get_model("mixtral-8x7b-instruct")) == 0
    assert stage_decoder_params(deepseek, 61) <= decoder_params(deepseek)


def test_weights_divide_by_tp_and_round_up() -> None:
    assert weight_bytes_per_gpu(TINY, "bf16", tp=1, pp=1) == 4_196_608 * 2
    assert weight_bytes_per_gpu(TINY, "bf16", tp=3, pp=1) == -(-4_196_608 * 2 // 3)
    # fp8: the (tied) embedding keeps 2 bytes, the rest takes 1.
    assert weight_bytes_per_gpu(TINY, "fp8", tp=1, pp=1) == 1024 * 256 * 2 + (4_196_608 - 1024 * 256)


def test_kv_heads_split_then_replicate() -> None:
    llama = LLAMA_8B  # 8 KV heads
    assert [kv_heads_per_gpu(llama, tp) for tp in (1, 2, 4, 8, 16)] == [8, 4, 2, 1, 1]
    assert kv_heads_per_gpu(get_model("deepseek-v3"), 8) == 1  # MLA latent


def test_kv_bytes_per_token() -> None:
    assert kv_bytes_per_token(LLAMA_8B, tp=1, pp=1) == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert kv_bytes_per_token(LLAMA_8B, tp=16, pp=1) == 2 * 32 * 1 * 128 * 2  # replicated, not 1/2 head
    assert kv_bytes_per_token(LLAMA_8B, tp=8, pp=3) == 2 * 11 * 1 * 128 * 2
    deepseek = get_model("deepseek-v3")
    assert kv_bytes_per_token(deepseek, tp=8, pp=1) == 61 * 576 * 2 == kv_bytes_per_token(deepseek, 1, 1)


def test_kv_dtype_stays_two_bytes_for_fp8_weights() -> None:
    fp8_llama = dataclasses.replace(LLAMA_8B, native_dtype="fp8")
    assert kv_bytes_per_token(fp8_llama, 1, 1) == kv_bytes_per_token(LLAMA_8B, 1, 1)


def test_runtime_overhead_is_near_kaitos_2_3_gib() -> None:
    assert runtime_overhead_bytes(TINY) == GiB + GiB // 2 + 8192 * 256 * 8
    assert runtime_overhead_bytes(get_model("llama-3.1-70b-instruct")) == 2 * GiB
    assert runtime_overhead_bytes(get_model("llama-3.1-405b-instruct")) == 2 * GiB + GiB // 2
    for name in ("llama-3.1-8b-instruct", "deepseek-v3", "qwen3-235b-a22b"):
        assert 1.5 * GiB <= runtime_overhead_bytes(get_model(name)) <= 2.5 * GiB


def test_usable_bytes_are_exact_fractions() -> None:
    assert usable_bytes(80 * GiB, 0.9) == 80 * GiB * 9 // 10
    assert usable_bytes(94 * GiB, 0.84) == 94 * GiB * 84 // 100
    assert usable_bytes(7, 0.5) == 3
    assert usable_bytes(80 * GiB, 1.0) == 80 * GiB


def test_budget_adds_up_and_fit_needs_one_full_sequence() -> None:
    budget = memory_budget(TINY, "bf16", tp=1, pp=1, gpu_memory_bytes=2 * GiB, gpu_memory_utilization=0.9)
    assert budget.weights + budget.runtime_overhead + budget.kv_cache == budget.usable
    tokens = kv_cache_tokens(budget, 4096)
    assert tokens == budget.kv_cache // 2048
    assert fits(budget, tokens)
    assert not fits(budget, tokens + 1)
    assert needed_bytes(budget, tokens + 1) > budget.usable
    starved = memory_budget(TINY, "bf16", 1, 1, gpu_memory_bytes=GiB, gpu_memory_utilization=0.9)
    assert starved.kv_cache < 0
    assert kv_cache_tokens(starved, 4096) == 0
