"""Prefill/decode sizing: the data and the formulas (`disaggregation.py` has the method and why).

Pure and standard-library only, so `disaggregation.py` (which plans) and `pd_explain.py` (which words the
figures) can share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

from phalanx.planner.params import count_active_parameters, edge_matrix_params
from phalanx.planner.throughput import REFERENCE_CONTEXT
from phalanx.planner.types import ModelArchitecture, Plan, Throughput

Side = Literal["prefill", "decode"]

# Lengths assumed when the deployment declares none: `vllm bench serve`'s random dataset defaults.
DEFAULT_PROMPT_TOKENS: Final = REFERENCE_CONTEXT
DEFAULT_OUTPUT_TOKENS: Final = 128
# Share of the dense bf16 peak a prefill reaches (an assumption: its matrix products are large).
PREFILL_EFFICIENCY: Final = 0.5
PAYS_STALL_STEPS: Final = 4.0
MAX_RATIO_SIDE: Final = 8
RATIO_TOLERANCE: Final = 0.15  # a ratio this close to the balance is as good: the estimates are not finer


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    ttft_seconds: float | None = None
    declared: bool = False  # False: the defaults above, and the plan says they were assumed


@dataclass(frozen=True)
class PdPlan:
    prefill: Plan
    decode: Plan
    workload: Workload
    prefill_flops: float  # of one prompt
    peak_flops: float  # dense bf16 FLOP/s of one prefill GPU
    peak_assumed: bool  # the GPU is not in the catalog: its peak is a stand-in
    prefill_seconds: float  # one prompt on one prefill replica: the prefill part of TTFT
    prefill_per_second: float  # prompts one prefill role instance serves
    prefill_tp_reason: str  # why the prefill side has its tensor parallel size
    decode_context: int  # tokens each decode sequence holds at its end: prompt + output
    decode_speed: Throughput
    decode_per_second: float  # requests one decode role instance finishes
    aggregated_stall_seconds: float  # one prompt's prefill on the decode layout, served aggregated
    proposed: tuple[int, int]  # (prefill, decode) role instances the figures balance at
    replicas: tuple[int, int]  # what the ServingGroup gets: pinned, the pinned ratio, or `proposed`
    replicas_from: str  # "pinned", "the ratio given" or "proposed"
    pays: bool
    lines: tuple[str, ...] = ()  # the figures as a person checks them (`pd_explain`)
    warnings: tuple[str, ...] = ()

    @property
    def stall_steps(self) -> float:
        return self.aggregated_stall_seconds / self.decode_speed.step_seconds


def prefill_flops(model: ModelArchitecture, prompt_tokens: int) -> float:
    """FLOPs of one prompt's forward pass (the embedding is a lookup; the LM head runs for the last token)."""
    linear = 2 * linear_params(model) * prompt_tokens
    attention = (
        2 * model.full_attention_layers * prompt_tokens**2 * model.num_attention_heads * model.head_dim
    )
    return float(linear + attention)


def prefill_seconds(model: ModelArchitecture, plan: Plan, prompt_tokens: int, peak_flops: float) -> float:
    """One prompt's prefill on one replica of `plan` (its tensor parallel GPUs work on it together)."""
    return prefill_flops(model, prompt_tokens) / (plan.tensor_parallel_size * peak_flops * PREFILL_EFFICIENCY)


def closest_ratio(target: float) -> tuple[int, int]:
    """Whole (prefill, decode) instances for `target` = prefill / decode: the fewest instances within
    RATIO_TOLERANCE of it, else the nearest; each side 1..MAX_RATIO_SIDE."""
    pairs = [(p, d) for p in range(1, MAX_RATIO_SIDE + 1) for d in range(1, MAX_RATIO_SIDE + 1)]

    def off(pair: tuple[int, int]) -> float:
        return abs(math.log(pair[0] / pair[1] / target))

    near = [pair for pair in pairs if off(pair) <= math.log(1 + RATIO_TOLERANCE)]
    if near:
        return min(near, key=lambda pair: (pair[0] + pair[1], off(pair)))
    return min(pairs, key=lambda pair: (off(pair), pair[0] + pair[1]))


def linear_params(model: ModelArchitecture) -> int:
    """Parameters that run for every prompt token: all active ones but the embedding and the LM head."""
    return count_active_parameters(model) - edge_matrix_params(model) * (1 if model.tied_embeddings else 2)
