"""SGLang's memory model: its default --mem-fraction-static, worked out by hand from SGLang 0.5.23's
formula, and the KV budget of a plan for SGLang (fraction x GPU - weights)."""

from __future__ import annotations

import pytest

from phalanx import planner
from phalanx.planner.sglang_memory import default_fraction, prefill_graph_sizes, reserve_mib, static_fraction
from phalanx.planner.types import GiB, MemoryModel, PlanRequest

H100 = 80 * GiB  # 81920 MiB
H200 = 141 * GiB  # 144384 MiB
L4 = 24 * GiB  # 24576 MiB


def test_prefill_graph_ladder() -> None:
    # 4..32 by 4 (8), 48..256 by 16 (14), 288..512 by 32 (8), 576..1024 by 64 (8), 1280..4096 by 256 (12),
    # then 4608.. by 512 up to the limit.
    assert prefill_graph_sizes(4096) == 50
    assert prefill_graph_sizes(8192) == 58
    assert prefill_graph_sizes(16384) == 74


@pytest.mark.parametrize(
    ("gpu", "tp", "pp", "mla", "reserve", "fraction"),
    [
        # 512 + 1.5 x 8192 + 1 x 1 / 8 x 1024 + 2 x 256 + 8 x 58 = 13904; (81920 - 13904) / 81920 = 0.8303
        (H100, 1, 1, False, 13904, 0.83),
        # tp 8: 512 + 12288 + 1024 + 2 x 512 + 464 = 15312; 66608 / 81920 = 0.8131
        (H100, 8, 1, False, 15312, 0.813),
        # two pipeline stages: + 1024 more parallel slack = 16336; 65584 / 81920 = 0.8006
        (H100, 8, 2, False, 16336, 0.801),
        # MLA (DeepSeek): the prefill graphs cost 1536 instead of 464 = 16384; 65536 / 81920 = 0.8
        (H100, 8, 1, True, 16384, 0.8),
        # H200, same tier as H100: 15312; (144384 - 15312) / 144384 = 0.8939
        (H200, 8, 1, False, 15312, 0.894),
        # 24 GiB: 4096-token chunks, 48 decode graphs: 512 + 6144 + 128 + 96 + 8 x 50 = 7280; 17296 / 24576
        (L4, 1, 1, False, 7280, 0.704),
    ],
)
def test_sglang_default_fraction_by_hand(
    gpu: int, tp: int, pp: int, mla: bool, reserve: int, fraction: float
) -> None:
    assert reserve_mib(gpu / (1 << 20), tp, pp, mla=mla) == reserve
    assert default_fraction(gpu, tp, pp, mla=mla) == fraction


def test_the_fraction_passed_is_never_above_sglangs_own() -> None:
    assert static_fraction(H100, 1, 1, mla=False, utilization=0.9) == 0.83  # 0.9 would starve its runtime
    assert static_fraction(H100, 1, 1, mla=False, utilization=0.7) == 0.7  # a lower ask is kept


def plan(memory_model: MemoryModel, utilization: float = 0.9) -> planner.Plan:
    return planner.make_plan(
        PlanRequest(
            model=planner.get_model("llama-3.1-8b-instruct"),
            shape=planner.shape_from_memory(1, "80Gi", "H100-80GB"),
            max_model_len=8192,
            gpu_memory_utilization=utilization,
            memory_model=memory_model,
        )
    )


def test_sglang_kv_budget_is_fraction_of_the_gpu_minus_weights() -> None:
    p = plan("sglang")
    assert p.gpu_memory_utilization == 0.83  # what --mem-fraction-static gets
    usable = 80 * GiB * 83 // 100  # 71_296_457_113
    weights = 8_030_261_248 * 2  # bf16
    assert (p.memory.usable, p.memory.weights, p.memory.runtime_overhead) == (usable, weights, 0)
    assert p.memory.kv_cache == usable - weights == 55_235_934_617
    # 32 layers x 8 KV heads x 128 x 2 (K and V) x 2 bytes = 131072 B per token
    assert p.kv_cache_tokens == 55_235_934_617 // 131072 == 421_416
    assert any("SGLang --mem-fraction-static" in line for line in p.arithmetic)


def test_vllm_budget_is_unchanged_by_the_sglang_model() -> None:
    p = plan("vllm")
    assert p.gpu_memory_utilization == 0.9
    assert p.memory.usable == 80 * GiB * 9 // 10
    assert p.memory.kv_cache == p.memory.usable - p.memory.weights - p.memory.runtime_overhead
    assert p.memory.runtime_overhead > 0
