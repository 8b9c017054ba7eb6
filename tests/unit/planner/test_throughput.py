"""The decode-throughput model and the layout choice it drives, checked against hand arithmetic.

Model (see phalanx/planner/throughput.py): per replica, batch = min(max_num_seqs, KV budget / KV of one
1024-token sequence); one micro-batch takes (weights read + micro-batch x KV of one sequence) / memory
bandwidth + 2 x layers x all-reduce; tokens/s per node = replicas x micro-batch / step / nodes.
"""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.planner import (
    GiB,
    Plan,
    PlanRequest,
    get_model,
    make_plan,
    shape_for_instance,
    shape_from_memory,
)
from phalanx.planner.catalog.gpus import A100_80GB_PCIE, H100_80GB
from phalanx.planner.throughput import allreduce_seconds, experts_touched, gpu_of, max_num_seqs


def plan(model: str, instance: str, **kwargs: Any) -> Plan:
    return make_plan(PlanRequest(model=get_model(model), shape=shape_for_instance(instance), **kwargs))


def test_allreduce_is_nccls_ring_latency_plus_bandwidth() -> None:
    assert allreduce_seconds(1e6, 1, H100_80GB) == 0.0
    # 8 GPUs over NVLink: 3.6 us + 14 hops x 0.47 us, then 2 x 7/8 of the message at 450 GB/s
    assert allreduce_seconds(8e6, 8, H100_80GB) == pytest.approx(3.6e-6 + 14 * 0.47e-6 + 1.75 * 8e6 / 450e9)
    # 4 GPUs over PCIe 4.0: 1 us a hop, 32 GB/s
    assert allreduce_seconds(8e6, 4, A100_80GB_PCIE) == pytest.approx(3.6e-6 + 6 * 1.0e-6 + 1.5 * 8e6 / 32e9)


def test_a_batch_touches_more_experts_the_larger_it_is() -> None:
    assert experts_touched(get_model("llama-3.1-8b-instruct"), 1) == 1.0  # dense: every weight
    mixtral = get_model("mixtral-8x7b-instruct")  # 2 of 8 experts a token
    assert experts_touched(mixtral, 1) == pytest.approx(2 / 8)
    assert experts_touched(mixtral, 10) == pytest.approx(1 - (6 / 8) ** 10)


def test_engine_batch_caps_follow_vllm_defaults() -> None:
    assert max_num_seqs(shape_for_instance("p5.48xlarge")) == 1024  # 80 GiB GPUs
    assert max_num_seqs(shape_for_instance("g6e.12xlarge")) == 256  # 48 GiB GPUs
    unknown = shape_from_memory(4, "80Gi", "some-new-gpu")
    assert gpu_of(unknown).name == "unknown"
    assert gpu_of(unknown).memory_bandwidth == 2.0e12


def test_data_parallel_estimate_by_hand() -> None:
    """Llama 3.1 8B on 4 x A100 80GB PCIe: four single-GPU replicas."""
    p = plan("llama-3.1-8b-instruct", "Standard_NC96ads_A100_v4")
    assert (p.data_parallel_size, p.tensor_parallel_size) == (4, 1)
    speed = p.throughput
    assert speed is not None
    kv_per_sequence = 1024 * 131072  # 1024 tokens x 128 KiB
    batch = min(1024, p.memory.kv_cache // kv_per_sequence)
    assert speed.batch == batch == 442
    assert speed.weight_bytes_read == p.memory.weights  # dense: every weight, every step
    assert speed.kv_bytes_read == batch * kv_per_sequence
    step = (p.memory.weights + batch * kv_per_sequence) / 1935e9
    assert speed.memory_seconds == pytest.approx(step)
    assert speed.allreduce_seconds == 0.0  # tp 1
    assert speed.tokens_per_second_per_node == pytest.approx(4 * batch / step)


def test_tensor_parallel_estimate_adds_two_allreduces_a_layer() -> None:
    p = plan("llama-3.1-8b-instruct", "Standard_NC96ads_A100_v4", data_parallel_size=1)
    assert p.tensor_parallel_size == 4
    speed = p.throughput
    assert speed is not None and speed.batch == 1024  # KV room for more than the engine's cap
    message = 1024 * 4096 * 2  # the micro-batch's hidden states in bf16
    per_call = 3.6e-6 + 6 * 1.0e-6 + 1.5 * message / 32e9
    assert speed.allreduce_seconds == pytest.approx(2 * 32 * per_call)
    assert speed.tokens_per_second_per_node == pytest.approx(
        1024 / (speed.memory_seconds + speed.allreduce_seconds)
    )


def test_pipeline_stages_split_the_batch_into_micro_batches() -> None:
    p = plan("llama-3.1-405b-instruct", "p5.48xlarge", max_model_len=8192)  # TP 8 x PP 2 over 2 nodes
    speed = p.throughput
    assert speed is not None and p.pipeline_parallel_size == 2
    micro = speed.batch / 2
    assert speed.kv_bytes_read == round(micro * 1024 * p.memory.kv_bytes_per_token)
    # one replica across 2 nodes: its tokens are shared by both
    assert speed.tokens_per_second_per_node == pytest.approx(micro / speed.step_seconds / 2)


def test_moe_reads_only_the_experts_its_tokens_use() -> None:
    p = plan("qwen3-30b-a3b", "Standard_NC24ads_A100_v4", max_model_len=4096)  # one GPU
    speed = p.throughput
    assert speed is not None
    assert speed.weight_bytes_read < p.memory.weights
    model = get_model("qwen3-30b-a3b")
    assert speed.batch >= 128  # 8 of 128 experts a token: a batch this size touches nearly all of them
    assert experts_touched(model, speed.batch) > 0.99


def test_kaitos_example_a_small_model_on_a_four_gpu_node_runs_four_replicas() -> None:
    p = plan("llama-3.1-8b-instruct", "Standard_NC96ads_A100_v4")
    assert (p.data_parallel_size, p.tensor_parallel_size, p.pipeline_parallel_size) == (4, 1, 1)
    labels = [option.label for option in p.layouts]
    assert labels == ["DP 4 x TP 1", "DP 2 x TP 2", "TP 4"]  # best first
    assert p.arithmetic[-1].startswith("chosen: DP 4 x TP 1, ")
    assert "% more tokens/s per node than DP 2 x TP 2" in p.arithmetic[-1]


def test_a_close_estimate_goes_to_the_larger_tensor_parallel_group() -> None:
    p = plan("llama-3.3-70b-instruct", "p5.48xlarge")
    faster = next(o for o in p.layouts if o.label == "DP 2 x TP 4")
    assert p.tensor_parallel_size == 8 and p.throughput is not None and faster.throughput is not None
    ours, theirs = p.throughput.tokens_per_second_per_node, faster.throughput.tokens_per_second_per_node
    assert ours < theirs <= ours / 0.95  # within the 5% tolerance
    assert "a tie the larger tensor parallel group wins" in p.arithmetic[-1]


def test_layouts_that_do_not_fit_say_so() -> None:
    p = plan("llama-3.3-70b-instruct", "p5.48xlarge")
    ruled = {o.label: o.ruled_out for o in p.layouts if o.ruled_out}
    assert ruled["DP 8 x TP 1"].startswith(
        "does not fit: one 131072-token sequence needs 40.0 GiB of KV cache"
    )
    assert any(line.startswith("  DP 4 x TP 2: ruled out: does not fit") for line in p.arithmetic)


def test_usable_memory_is_what_the_batch_fills() -> None:
    p = plan("gemma-3-27b-it", "Standard_NC40ads_H100_v5")
    speed = p.throughput
    assert speed is not None
    # sliding layers hold the whole 1024-token reference sequence (window 1024), full layers too
    per_sequence = 1024 * (p.memory.kv_bytes_per_token + p.memory.window_kv_bytes_per_token)
    assert speed.batch == p.memory.kv_cache // per_sequence
    assert p.memory.kv_cache < 40 * GiB
