"""What the planner refuses, what it warns about, and whether the fixes it offers really work."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from phalanx.planner import (
    GiB,
    ModelArchitecture,
    Plan,
    PlanningError,
    PlanRequest,
    get_model,
    make_plan,
    shape_for_instance,
    shape_from_memory,
)

USABLE_80 = 80 * GiB * 9 // 10


def request(model: str | ModelArchitecture, instance: str, **kwargs: Any) -> PlanRequest:
    arch = get_model(model) if isinstance(model, str) else model
    return PlanRequest(model=arch, shape=shape_for_instance(instance), **kwargs)


def plan(model: str | ModelArchitecture, instance: str, **kwargs: Any) -> Plan:
    return make_plan(request(model, instance, **kwargs))


def planning_error(model: str | ModelArchitecture, instance: str, **kwargs: Any) -> PlanningError:
    with pytest.raises(PlanningError) as caught:
        plan(model, instance, **kwargs)
    return caught.value


# --- a pinned node count that is too small ------------------------------------------------------------


def test_405b_pinned_to_one_p5_node_says_what_is_needed_and_what_works() -> None:
    error = planning_error("llama-3.1-405b-instruct", "p5.48xlarge", nodes=1)
    weights = 405_853_388_800 * 2 // 8  # tp 8, pp 1: all params at 2 B
    runtime = GiB + GiB // 2 + 8192 * 16384 * 2 * 4
    sequence = 131072 * (2 * 126 * 1 * 128 * 2)  # one full-context sequence of KV
    assert error.needed_bytes == weights + runtime + sequence
    assert error.available_bytes == USABLE_80
    assert "needs 104.9 GiB" in error.message
    assert "72.0 GiB is usable" in error.message
    assert "weights 94.5 GiB" in error.message
    assert len(error.fixes) == 3  # more nodes, a bigger instance, fp8 (no context is short enough)
    nodes_fix, instance_fix, fp8_fix = error.fixes
    assert nodes_fix.startswith("pin 2 nodes")
    assert instance_fix.startswith(
        "use p5e.48xlarge (8 x H200-141GB"
    )  # same cloud, fewest GPUs, least memory
    assert "fp8" in fp8_fix
    # ... and each fix is a plan that works:
    assert plan("llama-3.1-405b-instruct", "p5.48xlarge", nodes=2).nodes == 2
    assert plan("llama-3.1-405b-instruct", "p5e.48xlarge", nodes=1).nodes == 1
    assert plan("llama-3.1-405b-instruct", "p5.48xlarge", nodes=1, dtype="fp8").dtype == "fp8"
    assert "fix" not in str(error) or "  - pin 2 nodes" in str(error)


def test_shorter_context_fix_is_the_longest_multiple_of_1024_that_fits() -> None:
    error = planning_error("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", nodes=1)
    kv_budget = 94 * GiB * 9 // 10 - 70_553_706_496 - 2 * GiB
    longest = kv_budget // (2 * 80 * 4 * 128 * 2) // 1024 * 1024
    assert longest == 110592  # 110,701 tokens fit, rounded down to 108 x 1024
    assert any(fix.startswith(f"lower max_model_len to {longest} ") for fix in error.fixes)
    assert plan("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", nodes=1, max_model_len=longest)
    with pytest.raises(PlanningError):
        plan("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", nodes=1, max_model_len=longest + 1024)


def test_instance_fix_prefers_the_fewest_gpus() -> None:
    error = planning_error("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", nodes=1)
    # 4 x A100 80GB holds 70B with a full context on one node; 8-GPU instances would too, at twice the GPUs.
    assert any(fix.startswith("use Standard_NC96ads_A100_v4 (4 x") for fix in error.fixes)
    assert plan("llama-3.3-70b-instruct", "Standard_NC96ads_A100_v4", nodes=1).tensor_parallel_size == 4


def test_max_nodes_too_small_suggests_raising_it() -> None:
    error = planning_error("llama-3.1-405b-instruct", "Standard_ND96isr_H100_v5", max_nodes=1)
    assert error.fixes[0].startswith("allow up to 2 nodes")


# --- structural limits --------------------------------------------------------------------------------

TWELVE_HEADS = ModelArchitecture(
    name="twelve-heads",
    hf_id="test/twelve-heads",
    num_layers=24,
    hidden_size=768,
    num_attention_heads=12,
    num_kv_heads=12,
    head_dim=64,
    intermediate_size=3072,
    vocab_size=50304,
    num_params=124_000_000,
    max_context=2048,
)


def test_heads_not_divisible_by_the_node_rule_out_that_tp() -> None:
    p = plan(TWELVE_HEADS, "p5.48xlarge")
    # 12 % 8 != 0: no layout uses tp 8; a 124M model fits one GPU, so the node runs data-parallel replicas.
    assert p.data_parallel_size * p.tensor_parallel_size == 8
    assert p.pipeline_parallel_size == 1
    ruled_out = {o.label: o.ruled_out for o in p.layouts if o.ruled_out}
    assert ruled_out["TP 8"] == "12 attention heads are not divisible by 8"
    assert p.warnings == ()


def test_without_data_parallelism_the_node_splits_into_pipeline_stages() -> None:
    p = plan(TWELVE_HEADS, "p5.48xlarge", data_parallel_size=1)
    # 12 % 8 != 0, 12 % 4 == 0: tp 4, and each 8-GPU node runs 8 // 4 = 2 pipeline stages.
    assert (p.nodes, p.data_parallel_size, p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 1, 4, 2)
    assert p.tensor_parallel_size * p.pipeline_parallel_size == p.nodes * p.gpus_per_node
    assert len(p.warnings) == 1
    assert "tensor parallel size 4, not 8" in p.warnings[0]
    assert "12 attention heads are not divisible by 8" in p.warnings[0]


def test_kv_heads_that_neither_split_nor_replicate_evenly_lower_tp() -> None:
    three_kv = dataclasses.replace(TWELVE_HEADS, name="three-kv", num_kv_heads=3)
    p = plan(three_kv, "g5.12xlarge", data_parallel_size=1)  # 4 GPUs: tp 4 and tp 2 leave 3 KV heads uneven
    assert (p.tensor_parallel_size, p.pipeline_parallel_size) == (1, 4)
    assert "3 KV heads can be neither split nor replicated evenly over 4 ranks" in p.warnings[0]
    replicas = plan(three_kv, "g5.12xlarge")
    assert (replicas.data_parallel_size, replicas.tensor_parallel_size) == (4, 1)


def test_more_pipeline_stages_than_layers_is_refused() -> None:
    # tiny-test: 4 heads -> tp 4 on an 8-GPU node, 2 stages per node; 3 nodes = 6 stages > 4 layers.
    error = planning_error("tiny-test", "p5.48xlarge", nodes=3)
    assert "pipeline parallel size 6" in error.message
    assert "4 layers" in error.message
    assert error.fixes == ("pin at most 2 nodes",)
    assert plan("tiny-test", "p5.48xlarge", nodes=2).pipeline_parallel_size == 4


def test_fp8_blocks_rule_out_a_tp_that_splits_a_block() -> None:
    deepseek = get_model("deepseek-v3")
    shape = shape_from_memory(32, "141Gi", "H200-141GB")  # a hypothetical 32-GPU node
    p = make_plan(PlanRequest(model=deepseek, shape=shape, data_parallel_size=1))
    # At tp 32, 18432 / 32 = 576 (and 2048 / 32 = 64) are not multiples of the 128 block;
    # at tp 16, 18432 / 16 = 1152 = 9 x 128 and 2048 / 16 = 128 are.
    assert (p.tensor_parallel_size, p.pipeline_parallel_size) == (16, 2)
    assert "intermediate_size 18432 / 32 = 576 is not a multiple of 128" in p.warnings[0]
    replicas = make_plan(PlanRequest(model=deepseek, shape=shape))
    assert (replicas.data_parallel_size, replicas.tensor_parallel_size) == (4, 8)  # 18432 / 8 = 18 x 128
    assert any("576 is not a multiple of 128" in o.ruled_out for o in replicas.layouts)
    upcast = make_plan(PlanRequest(model=deepseek, shape=shape, dtype="bf16", data_parallel_size=1))
    assert upcast.tensor_parallel_size == 32  # bf16 weights have no blocks to respect


def test_fp8_expert_blocks_alone_can_lower_tp() -> None:
    model = get_model("deepseek-v3")
    assert model.moe is not None
    narrow = dataclasses.replace(model, moe=dataclasses.replace(model.moe, moe_intermediate_size=1536))
    p = plan(narrow, "Standard_ND96isr_H200_v5")
    # 1536 / 8 = 192 is not a multiple of 128, 1536 / 4 = 384 = 3 x 128 is: tp 4, 2 stages per node.
    assert (p.tensor_parallel_size, p.pipeline_parallel_size) == (4, 2)
    assert "moe_intermediate_size 1536 / 8 = 192 is not a multiple of 128" in p.warnings[0]


def test_max_model_len_beyond_the_context_window_names_both_numbers() -> None:
    error = planning_error("qwen2.5-72b-instruct", "p5.48xlarge", max_model_len=131072)
    assert "131072" in error.message
    assert "32768" in error.message
    assert error.fixes == ("set max_model_len to at most 32768",)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"gpu_memory_utilization": 0.0}, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"nodes": 0}, "nodes must be at least 1"),
        ({"max_nodes": 0}, "max_nodes must be at least 1"),
        ({"nodes": 3, "max_nodes": 2}, "nodes 3 is more than max_nodes 2"),
        ({"max_model_len": 0}, "max_model_len must be at least 1"),
    ],
)
def test_impossible_request_values_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    assert fragment in planning_error("tiny-test", "g6.xlarge", **kwargs).message


# --- warnings -----------------------------------------------------------------------------------------


def test_pinned_more_nodes_than_needed_is_honoured_with_a_warning() -> None:
    p = plan("llama-3.1-405b-instruct", "p5.48xlarge", nodes=3)
    assert (p.nodes, p.pipeline_parallel_size) == (3, 3)  # used as given, never silently lowered
    assert p.warnings == ("pinned to 3 nodes; 2 would suffice",)


def test_max_nodes_larger_than_needed_says_how_many_are_used() -> None:
    p = plan("llama-3.1-405b-instruct", "p5.48xlarge", max_nodes=4)
    assert p.nodes == 2
    assert p.warnings == ("uses 2 of at most 4 nodes: 2 already fit",)


def test_upcasting_an_fp8_checkpoint_warns_and_costs_two_bytes_per_weight() -> None:
    p = plan("deepseek-v3", "Standard_ND96isr_H200_v5", dtype="bf16")
    assert p.dtype == "bf16"
    assert p.nodes == 2  # 671B x 2 B no longer fits 8 x 141 GiB
    assert any("fp8 checkpoint" in warning and "bf16 copy" in warning for warning in p.warnings)


def test_fp8_on_a_bf16_checkpoint_halves_the_decoder_weights() -> None:
    p = plan("llama-3.1-405b-instruct", "p5.48xlarge", dtype="fp8")
    matrix = 128256 * 16384
    assert p.nodes == 1
    assert p.memory.weights == (2 * matrix * 2 + (405_853_388_800 - 2 * matrix) * 1) // 8
    assert any("vLLM --quantization fp8_per_tensor" in warning for warning in p.warnings)


def test_tensor_parallel_over_pcie_only_gpus_is_flagged() -> None:
    p = plan("llama-3.1-8b-instruct", "g6e.12xlarge", tensor_parallel_size=4)  # 4 x L40S, no NVLink
    assert p.tensor_parallel_size == 4
    assert p.warnings == (
        "L40S GPUs have no NVLink: tensor parallel size 4 all-reduces over PCIe;"
        " expect lower throughput than on NVLink GPUs",
    )
    assert (
        plan("llama-3.1-8b-instruct", "g6e.12xlarge").tensor_parallel_size == 1
    )  # 4 replicas: no all-reduce
    assert plan("llama-3.1-8b-instruct", "p5.48xlarge", tensor_parallel_size=8).warnings == ()
