"""Side by side: what KAITO and Phalanx run for the same model on the same instance type.

KAITO's choices are re-stated from its v0.12 source:
* nodes: the node estimator (the `nodesestimator` package): model size x 1.02, GPU memory x 0.84,
  a 2.3 GiB reserve plus KV for `maxModelLen` tokens (2048 when the user sets none), weights x 1.05;
* layout: `configureParallelism` (in `pkg/model`): on one node, data parallel over every GPU with
  TP 1 when the model is under half of one GPU, else TP over every GPU; across nodes TP = GPUs per node and
  PP = nodes;
* context: vLLM is started with `--max-model-len=auto` (the longest context the KV cache holds, up to the
  model's) unless the user sets one, and `--gpu-memory-utilization 0.84` (0.82 on A10).
Model sizes and KV bytes per token are KAITO's catalog values and generator formula (405B is not a KAITO
preset: its size is its bf16 weights). What `auto` picks and the decode estimates are computed with
Phalanx's memory and throughput models at KAITO's settings: estimates, not measurements.

Run: .venv/bin/python bench/planner/compare_kaito.py
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phalanx import planner
from phalanx.planner.memory import longest_sequence, memory_budget
from phalanx.planner.types import GiB, GpuShape, ModelArchitecture, Plan, PlanningError, PlanRequest

# KAITO's catalog `modelFileSize` (GiB) of each checkpoint. gpt-oss-120b's counts its repository's second
# copy of the weights (original/): the mxfp4 weights are 60.8 GiB.
KAITO_SIZES_GIB = {
    "llama-3.1-8b-instruct": 14.96,
    "llama-3.3-70b-instruct": 131.42,
    "llama-3.1-405b-instruct": 405.85e9 * 2 / GiB,
    "phi-4": 27.31,
    "phi-3-mini-128k-instruct": 7.12,
    "qwen2.5-coder-32b-instruct": 61.03,
    "gpt-oss-20b": 25.63,
    "gpt-oss-120b": 121.54,
    "gemma-3-27b-it": 51.10,
    "deepseek-r1-0528": 641.30,
    "mistral-large-3-675b-instruct": 634.70,
}
KAITO_UTILIZATION = 0.84
KAITO_UTILIZATION_A10 = 0.82
KAITO_DEFAULT_KV_TOKENS = 2048


@dataclass(frozen=True)
class Case:
    model: str
    instance: str
    max_model_len: int | None = None  # None: the user sets none


CASES = [
    Case("llama-3.1-8b-instruct", "Standard_NC96ads_A100_v4"),
    Case("llama-3.1-8b-instruct", "p5.48xlarge"),
    Case("llama-3.1-8b-instruct", "g5.12xlarge"),
    Case("phi-3-mini-128k-instruct", "g5.12xlarge"),
    Case("phi-4", "Standard_NC96ads_A100_v4"),
    Case("qwen2.5-coder-32b-instruct", "Standard_NC96ads_A100_v4"),
    Case("gpt-oss-20b", "p5.48xlarge"),
    Case("gpt-oss-120b", "p5.48xlarge"),
    Case("gpt-oss-120b", "Standard_NC80adis_H100_v5"),
    Case("gemma-3-27b-it", "Standard_NC80adis_H100_v5"),
    Case("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5"),
    Case("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", 8192),
    Case("llama-3.3-70b-instruct", "Standard_NC24ads_A100_v4", 8192),
    Case("llama-3.3-70b-instruct", "p5.48xlarge"),
    Case("llama-3.1-405b-instruct", "p5.48xlarge", 8192),
    Case("deepseek-r1-0528", "Standard_ND96isr_H200_v5", 8192),
    Case("deepseek-r1-0528", "Standard_ND96isr_H100_v5", 8192),
    Case("mistral-large-3-675b-instruct", "Standard_NC80adis_H100_v5", 8192),
]


def kaito_bytes_per_token(model: ModelArchitecture) -> int:
    """KAITO's generator: 2 bytes x layers x (2 x KV heads x head_dim, or the MLA latent); no windows."""
    if model.mla is not None:
        return 2 * model.num_layers * (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim)
    return 2 * model.num_layers * 2 * model.num_kv_heads * model.head_dim


def kaito_utilization(shape: GpuShape) -> float:
    return KAITO_UTILIZATION_A10 if shape.gpu_product == "A10" else KAITO_UTILIZATION


def kaito_nodes(case: Case, model: ModelArchitecture, shape: GpuShape) -> int | None:
    """KAITO's node estimator (None: it reports an error)."""
    size_gib = KAITO_SIZES_GIB[case.model]
    available = shape.gpu_memory_bytes / GiB * KAITO_UTILIZATION
    kv_tokens = case.max_model_len or KAITO_DEFAULT_KV_TOKENS
    reserve = 2.3 + kv_tokens * kaito_bytes_per_token(model) / shape.gpus_per_node / GiB
    if available <= reserve:
        return None
    usable = (available - reserve) / 1.05
    min_gpus = int(size_gib * 1.02 / usable) + 1
    return math.ceil(min_gpus / shape.gpus_per_node)


def kaito_layout(case: Case, shape: GpuShape, nodes: int) -> tuple[int, int, int]:
    """(dp, tp, pp) of KAITO's configureParallelism."""
    gpus = shape.gpus_per_node
    size = KAITO_SIZES_GIB[case.model] * GiB
    if nodes == 1 and gpus > 1 and size * gpus * 2 < shape.gpu_memory_bytes * gpus:
        return gpus, 1, 1
    return 1, gpus, nodes


def label(dp: int, tp: int, pp: int) -> str:
    return planner.LayoutOption(dp, tp, pp).label


def kaito_context(case: Case, model: ModelArchitecture, shape: GpuShape, layout: tuple[int, int, int]) -> str:
    """What `--max-model-len=auto` gives at KAITO's layout and utilisation (or the user's fixed value)."""
    _, tp, pp = layout
    util = kaito_utilization(shape)
    budget = memory_budget(model, model.native_dtype, tp, pp, shape.gpu_memory_bytes, util)
    longest = longest_sequence(budget)
    if longest is not None and longest < 1:
        return "no KV room: vLLM does not start"
    fits = model.max_context if longest is None else min(model.max_context, longest)
    if case.max_model_len is not None:
        return (
            f"{case.max_model_len}" if fits >= case.max_model_len else f"{case.max_model_len}: does not fit"
        )
    return f"auto ~{fits}"


def ours(case: Case, model: ModelArchitecture, shape: GpuShape) -> Plan | None:
    request = PlanRequest(model=model, shape=shape, max_model_len=case.max_model_len, max_nodes=16)
    try:
        return planner.make_plan(request)
    except PlanningError:
        return None


def speed_of(
    case: Case, model: ModelArchitecture, shape: GpuShape, nodes: int, layout: tuple[int, int, int]
) -> str:
    """Phalanx's decode estimate for a layout, at the context Phalanx plans (or n/a if it does not fit)."""
    dp, tp, _ = layout
    request = PlanRequest(
        model=model,
        shape=shape,
        nodes=nodes,
        max_model_len=case.max_model_len,
        tensor_parallel_size=tp,
        data_parallel_size=dp,
    )
    try:
        plan = planner.make_plan(request)
    except PlanningError:
        return "does not fit"
    assert plan.throughput is not None
    return f"{plan.throughput.tokens_per_second_per_node:,.0f}"


def row(case: Case) -> str:
    model, shape = planner.get_model(case.model), planner.shape_for_instance(case.instance)
    asked = str(case.max_model_len) if case.max_model_len else "unset"
    nodes = kaito_nodes(case, model, shape)
    plan = ours(case, model, shape)
    if plan is None:
        phalanx = "no plan within 16 nodes"
        phalanx_speed = "-"
    else:
        phalanx = f"{plan.nodes} x {plan.layout}, {plan.max_model_len}, KV {plan.kv_cache_tokens:,}/replica"
        assert plan.throughput is not None
        phalanx_speed = f"{plan.throughput.tokens_per_second_per_node:,.0f}"
    if nodes is None:
        kaito, kaito_speed = "estimator error", "-"
    else:
        layout = kaito_layout(case, shape, nodes)
        kaito = f"{nodes} x {label(*layout)}, {kaito_context(case, model, shape, layout)}"
        kaito_speed = speed_of(case, model, shape, nodes, layout) if plan is not None else "-"
    cells = (case.model, case.instance, asked, kaito, phalanx, kaito_speed, phalanx_speed)
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    print(
        "| model | instance | maxModelLen set | KAITO: nodes x layout, context"
        " | Phalanx: nodes x layout, context, KV tokens"
        " | decode tok/s/node, KAITO's layout* | decode tok/s/node, Phalanx* |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in CASES:
        print(row(case))
    print()
    print(
        "\\* Phalanx's throughput model, at the context Phalanx plans (unset: the model's full context) and"
        ' gpuMemoryUtilization 0.9; "does not fit": KAITO\'s layout cannot hold one sequence of that length.'
    )


if __name__ == "__main__":
    main()
