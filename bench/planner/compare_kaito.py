"""Side by side: Phalanx's planner and KAITO's node estimator on the same models and instances.

KAITO's formula is re-stated from its v0.12 source (`pkg/workspace/estimator/nodesestimator`); its
safetensors sizes are KAITO's catalog values.
Run: .venv/bin/python bench/planner/compare_kaito.py
"""

from __future__ import annotations

import math

from phalanx import planner
from phalanx.planner.types import GiB, PlanningError, PlanRequest

# KAITO catalog: safetensors size (GiB) and BytesPerToken; 405B is not a KAITO preset, so its size
# is the bf16 weight bytes (405.85e9 params x 2 B).
KAITO_MODELS = {
    "llama-3.3-70b-instruct": (131.42, 327680),
    "llama-3.1-405b-instruct": (405.85e9 * 2 / GiB, 516096),
    "deepseek-r1": (641.30, 70272),
}
CASES = [
    ("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", 8192),
    ("llama-3.3-70b-instruct", "Standard_NC80adis_H100_v5", None),
    ("llama-3.3-70b-instruct", "Standard_NC24ads_A100_v4", 8192),
    ("llama-3.1-405b-instruct", "p5.48xlarge", 8192),
    ("llama-3.1-405b-instruct", "p5.48xlarge", None),
    ("deepseek-r1", "Standard_ND96isr_H200_v5", 8192),
    ("deepseek-r1", "Standard_ND96isr_H100_v5", 8192),
    ("deepseek-r1", "Standard_NC80adis_H100_v5", 8192),
]


def kaito_nodes(model: str, instance: str, max_model_len: int | None) -> int | str:
    size_gib, bytes_per_token = KAITO_MODELS[model]
    shape = planner.shape_for_instance(instance)
    per_gpu = shape.gpu_memory_bytes / GiB
    available = per_gpu * 0.84
    kv_len = max_model_len or 2048  # KAITO assumes 2048 when max-model-len is not set
    reserve = 2.3 + kv_len * bytes_per_token / shape.gpus_per_node / GiB
    if available <= reserve:
        return "error"
    usable = (available - reserve) / 1.05
    min_gpus = int(size_gib * 1.02 / usable) + 1
    return math.ceil(min_gpus / shape.gpus_per_node)


def ours(model: str, instance: str, max_model_len: int | None) -> str:
    request = PlanRequest(
        model=planner.get_model(model),
        shape=planner.shape_for_instance(instance),
        max_model_len=max_model_len,
        max_nodes=16,
    )
    try:
        plan = planner.make_plan(request)
    except PlanningError as exc:
        return f"no fit: {exc.message.splitlines()[0][:60]}"
    return (
        f"{plan.nodes} node(s), {plan.layout}, "
        f"{plan.dtype}, maxModelLen {plan.max_model_len}, KV {plan.kv_cache_tokens:,} tokens "
        f"({plan.max_concurrent_sequences} full sequences)"
    )


def main() -> None:
    print("| model | instance | maxModelLen | KAITO nodes | Phalanx plan |")
    print("| --- | --- | --- | --- | --- |")
    for model, instance, length in CASES:
        shown = length if length is not None else "model max"
        kaito, phalanx_plan = kaito_nodes(model, instance, length), ours(model, instance, length)
        print(f"| {model} | {instance} | {shown} | {kaito} | {phalanx_plan} |")


if __name__ == "__main__":
    main()
