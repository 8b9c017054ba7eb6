"""JSON output, byte formatting and the printed arithmetic."""

from __future__ import annotations

import json

import pytest

from phalanx.planner import (
    GiB,
    PlanRequest,
    format_bytes,
    get_model,
    make_plan,
    plan_to_dict,
    shape_for_instance,
)
from phalanx.planner.units import format_gib


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (32256, "31.5 KiB"),
        (GiB // 2, "512.0 MiB"),
        (int(12.34 * GiB), "12.3 GiB"),
        (80 * GiB, "80.0 GiB"),
        (2048 * GiB, "2.0 TiB"),
        (-3 * GiB, "-3.0 GiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_format_gib_keeps_gib() -> None:
    assert format_gib(GiB // 4) == "0.2 GiB"


def test_plan_to_dict_is_json_with_the_promised_keys() -> None:
    plan = make_plan(
        PlanRequest(
            model=get_model("llama-3.1-405b-instruct"), shape=shape_for_instance("p5.48xlarge"), max_nodes=4
        )
    )
    data = json.loads(json.dumps(plan_to_dict(plan)))
    for key in (
        "nodes",
        "gpus_per_node",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "kv_cache_tokens",
        "max_concurrent_sequences",
        "dtype",
        "max_model_len",
        "gpu_memory_utilization",
        "memory",
        "warnings",
        "arithmetic",
        "model",
        "instance_type",
    ):
        assert key in data
    assert (data["nodes"], data["tensor_parallel_size"], data["pipeline_parallel_size"]) == (2, 8, 2)
    assert data["total_gpus"] == 16
    assert data["instance_type"] == "p5.48xlarge"
    assert data["model"] == "llama-3.1-405b-instruct"
    assert data["memory"]["per_gpu_bytes"]["weights"] == plan.memory.weights
    assert data["memory"]["per_gpu_bytes"]["kv_per_token"] == 32256
    assert data["memory"]["per_gpu_gib"]["usable"] == 72.0
    assert data["warnings"] == ["uses 2 of at most 4 nodes: 2 already fit"]
    assert data["arithmetic"] == list(plan.arithmetic)


def test_arithmetic_shows_each_step_with_its_result() -> None:
    plan = make_plan(PlanRequest(model=get_model("deepseek-r1"), shape=shape_for_instance("p5.48xlarge")))
    text = "\n".join(plan.arithmetic)
    assert text.startswith("shape: p5.48xlarge (8 x H100-80GB, 80.0 GiB each)")
    assert "tensor 8 x pipeline 2" in text
    assert f"/ tp 8 = {plan.memory.weights:,} B" in text
    assert "31 layers x (512 latent + 64 rope = 576) x 2 B" in text
    assert f"= {plan.memory.kv_bytes_per_token:,} B" in text
    assert f"KV cache tokens = {plan.memory.kv_cache:,} B // 35,712 B = {plan.kv_cache_tokens:,}" in text
    concurrency = next(line for line in plan.arithmetic if line.startswith("max concurrent sequences"))
    assert concurrency.endswith(f"= {plan.max_concurrent_sequences}")
    assert plan.arithmetic[-1] == "chosen: TP 8 x PP 2, the only layout that fits"
