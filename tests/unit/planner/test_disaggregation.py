"""Prefill/decode sizing: prefill by compute and a TTFT target, decode by KV capacity, the ratio between them,
and the plan saying when disaggregation does not pay."""

from __future__ import annotations

from dataclasses import replace

import pytest

from phalanx import planner
from phalanx.planner.disaggregation import (
    PAYS_STALL_STEPS,
    PREFILL_EFFICIENCY,
    PdPlan,
    PdRequest,
    SidePlanningError,
    Workload,
    closest_ratio,
    plan_disaggregated,
    prefill_flops,
)
from phalanx.planner.params import count_active_parameters
from phalanx.planner.types import ModelArchitecture, PlanRequest


def request(model: str, instance: str, prompt: int, output: int, **pd: object) -> PdRequest:
    base = PlanRequest(
        model=planner.get_model(model), shape=planner.shape_for_instance(instance), max_model_len=32768
    )
    work = Workload(prompt, output, declared=True)
    return PdRequest(prefill=base, decode=base, workload=work, **pd)  # type: ignore[arg-type]


def plan(model: str, instance: str, prompt: int, output: int, **pd: object) -> PdPlan:
    return plan_disaggregated(request(model, instance, prompt, output, **pd))


def test_prefill_flops_by_hand_for_a_small_dense_model() -> None:
    model = ModelArchitecture(
        name="toy",
        hf_id="toy",
        num_layers=2,
        hidden_size=64,
        num_attention_heads=4,
        num_kv_heads=4,
        head_dim=16,
        intermediate_size=128,
        vocab_size=100,
        num_params=0,
        max_context=1024,
    )
    # per layer: q, k, v, o 64 x 64 each + gated MLP 3 x 64 x 128 + 2 norms of 64; final norm; untied edges
    layer = 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert count_active_parameters(model) == 2 * layer + 64 + 2 * 100 * 64
    linear = 2 * (2 * layer + 64) * 10  # the embedding is a lookup, the LM head runs for the last token
    attention = 2 * 2 * 10**2 * 4 * 16
    assert prefill_flops(model, 10) == linear + attention


@pytest.mark.parametrize(
    ("model", "instance"),
    [
        ("llama-3.1-8b-instruct", "p5.48xlarge"),
        ("llama-3.3-70b-instruct", "p5.48xlarge"),
        ("qwen3-30b-a3b", "Standard_ND96isr_H100_v5"),
        ("deepseek-r1", "Standard_ND96isr_H200_v5"),
    ],
)
def test_long_prompts_pay_and_short_ones_do_not(model: str, instance: str) -> None:
    long = plan(model, instance, 16000, 256)
    short = plan(model, instance, 200, 256)
    assert long.pays and long.stall_steps >= PAYS_STALL_STEPS
    assert long.warnings == ()
    assert not short.pays and short.stall_steps < PAYS_STALL_STEPS
    (warning,) = short.warnings
    assert warning.startswith("disaggregation does not pay for prompts of 200 tokens")
    assert "serve aggregated" in warning
    assert any(line.startswith("disaggregation does not pay") for line in short.lines)


def test_ratio_follows_where_the_work_is() -> None:
    """Longer prompts need more prefill per decode instance; longer outputs more decode per prefill."""
    prompts = [plan("llama-3.3-70b-instruct", "p5.48xlarge", n, 256) for n in (1000, 4000, 16000)]
    targets = [p.decode_per_second / p.prefill_per_second for p in prompts]
    assert targets == sorted(targets)
    outputs = [plan("llama-3.3-70b-instruct", "p5.48xlarge", 4000, n) for n in (64, 512, 4096)]
    targets = [p.decode_per_second / p.prefill_per_second for p in outputs]
    assert targets == sorted(targets, reverse=True)
    assert outputs[0].proposed[0] > outputs[0].proposed[1]  # short answers: prefill-heavy
    assert outputs[-1].proposed[0] < outputs[-1].proposed[1]  # long answers: decode-heavy


def test_the_figures_behind_the_ratio_are_consistent() -> None:
    pd = plan("llama-3.1-8b-instruct", "p5.48xlarge", 8000, 512)
    gpu = planner.get_gpu_product("H100-80GB")
    flops = prefill_flops(planner.get_model("llama-3.1-8b-instruct"), 8000)
    tp = pd.prefill.tensor_parallel_size
    assert pd.prefill_seconds == pytest.approx(flops / (tp * gpu.dense_flops * PREFILL_EFFICIENCY))
    replicas = pd.prefill.data_parallel_size * pd.prefill.pipeline_parallel_size
    assert pd.prefill_per_second == pytest.approx(replicas / pd.prefill_seconds)
    speed = pd.decode_speed
    assert pd.decode_per_second == pytest.approx(speed.tokens_per_second_per_node * pd.decode.nodes / 512)
    assert pd.replicas == pd.proposed
    assert not pd.peak_assumed and not any("assumed" in line for line in pd.lines[1:])  # H100: in the catalog
    ratio = next(line for line in pd.lines if line.startswith("ratio prefill:decode"))
    assert ratio.endswith(
        f"-> {pd.proposed[0]}:{pd.proposed[1]} (the fewest role instances within 15%, at most 8 a side)"
    )


def test_decode_batch_is_what_the_kv_cache_holds_of_whole_requests() -> None:
    long = plan("llama-3.3-70b-instruct", "p5.48xlarge", 30000, 2000)
    short = plan("llama-3.3-70b-instruct", "p5.48xlarge", 1000, 200)
    assert long.decode_speed.batch < short.decode_speed.batch
    context = 32000
    per_sequence = long.decode.memory.kv_bytes_per_token * context
    assert long.decode_speed.batch == long.decode.memory.kv_cache // per_sequence


def test_ttft_target_picks_the_smallest_tensor_parallel_size_that_meets_it() -> None:
    base = request("llama-3.1-8b-instruct", "p5.48xlarge", 16000, 256)
    untargeted = plan_disaggregated(base)
    assert untargeted.prefill.tensor_parallel_size == 8  # fastest without a target
    fast = untargeted.prefill_seconds
    # a target between TP 2's and TP 4's prefill time: TP 4 is the smallest that meets it
    target = fast * 8 / 3
    targeted = plan_disaggregated(replace(base, workload=replace(base.workload, ttft_seconds=target)))
    assert targeted.prefill.tensor_parallel_size == 4
    assert targeted.prefill.data_parallel_size == 2
    assert targeted.prefill_seconds <= target
    assert any("smallest that prefills one prompt within the TTFT target" in line for line in targeted.lines)
    # the planner chose that TP, the user did not pin it: the side's own lines say so
    assert not any("pinned" in line for line in targeted.prefill.arithmetic)
    assert any(
        "tensor parallel size 4: the prefill TP (below)" in line for line in targeted.prefill.arithmetic
    )
    # the prompts a prefill instance serves stay the same: the node's compute is split, not lost
    assert targeted.prefill_per_second == pytest.approx(untargeted.prefill_per_second)


def test_unreachable_ttft_target_takes_the_fastest_and_says_so() -> None:
    base = request("llama-3.3-70b-instruct", "p5.48xlarge", 30000, 256)
    missed = plan_disaggregated(replace(base, workload=replace(base.workload, ttft_seconds=0.001)))
    assert missed.prefill.tensor_parallel_size == 8
    assert any(line.startswith("prefill TP: none meets the TTFT target 1.0 ms") for line in missed.lines)


def test_a_pinned_prefill_tensor_parallel_size_is_used_as_given() -> None:
    base = request("llama-3.1-8b-instruct", "p5.48xlarge", 16000, 256)
    pinned = plan_disaggregated(replace(base, prefill=replace(base.prefill, tensor_parallel_size=2)))
    assert (pinned.prefill.tensor_parallel_size, pinned.prefill.data_parallel_size) == (2, 4)
    assert pinned.decode == plan_disaggregated(base).decode  # the pin is prefill's alone


def test_pinned_replicas_and_ratio_are_used_and_the_proposal_still_shown() -> None:
    pinned = plan("llama-3.1-8b-instruct", "p5.48xlarge", 16000, 256, replicas=(2, 5))
    assert pinned.replicas == (2, 5)
    assert pinned.lines[-1].startswith(
        "role instances per ServingGroup: 2 prefill + 5 decode (pinned) = 56 GPUs"
    )
    ratio = plan("llama-3.1-8b-instruct", "p5.48xlarge", 16000, 256, ratio=(1, 3))
    assert ratio.replicas == (1, 3)
    assert "(the ratio given)" in ratio.lines[-1]
    assert ratio.proposed == pinned.proposed


def test_assumed_workload_is_said_to_be_assumed() -> None:
    base = request("llama-3.1-8b-instruct", "p5.48xlarge", 16000, 256)
    pd = plan_disaggregated(replace(base, workload=Workload()))
    assert pd.lines[0] == (
        "workload: prompts of 1,024 tokens, outputs of 128 tokens,"
        " assumed (vllm bench serve's defaults): declare spec.workload"
    )


def test_a_side_that_does_not_fit_is_named() -> None:
    base = request("llama-3.3-70b-instruct", "g5.12xlarge", 4000, 256)
    with pytest.raises(SidePlanningError) as raised:
        plan_disaggregated(replace(base, decode=replace(base.decode, nodes=1)))
    assert raised.value.side == "decode"
    assert raised.value.error.field == "nodes"


@pytest.mark.parametrize(
    ("target", "expected"),
    [(1.0, (1, 1)), (3.17, (3, 1)), (0.374, (1, 3)), (0.43, (2, 5)), (0.01, (1, 8)), (50.0, (8, 1))],
)
def test_closest_ratio(target: float, expected: tuple[int, int]) -> None:
    assert closest_ratio(target) == expected
