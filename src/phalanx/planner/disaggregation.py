"""Prefill/decode disaggregation: size each side and propose how many prefill per decode role instances.

Each side is planned like an aggregated deployment (`make_plan`), then weighed by what it does:

* Prefill is compute bound. One prompt of n tokens costs 2 x (active parameters that run per token) x n
  + 2 x full-attention layers x n^2 x (heads x head_dim) FLOPs (causal attention: half of QK^T and of AV),
  at PREFILL_EFFICIENCY of the GPUs' dense bf16 peak. Its latency on a replica of tp x pp GPUs is
  FLOPs / (tp x peak x efficiency) (pipeline stages run one after another for one prompt); a role instance
  prefills dp x pp prompts at once. The tensor parallel size is the smallest that meets the TTFT target
  (a smaller one spends less on all-reduces and fits more replicas), or the fastest without a target.
* Decode is memory bound and limited by KV capacity: the throughput model (`throughput.py`) with sequences
  of prompt + output tokens in flight, the batch being what the KV cache holds of them (or the engine cap).
* The ratio balances the two: prefill instances x prompts per second each = decode instances x requests
  per second each, rounded to whole role instances of at most MAX_RATIO_SIDE per side.
* Disaggregation pays when, served aggregated, one prompt's prefill would stall the running decodes for at
  least PAYS_STALL_STEPS decode steps; below that the KV transfer and the second hop cost more than the
  inter-token latency they save, and the plan says so.

Estimates to choose sizes with, not measurements: `phalanx plan` prints every figure behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final, Literal

from phalanx.planner.memory import sequence_kv_bytes
from phalanx.planner.parallelism import divisors_descending
from phalanx.planner.params import count_active_parameters, edge_matrix_params
from phalanx.planner.search import make_plan
from phalanx.planner.throughput import REFERENCE_CONTEXT, Replica, estimate, gpu_of
from phalanx.planner.types import ModelArchitecture, Plan, PlanningError, PlanRequest, Throughput
from phalanx.planner.units import format_bytes, format_gib

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
class PdRequest:
    prefill: PlanRequest  # tensor_parallel_size set: pinned for prefill; else chosen for the TTFT target
    decode: PlanRequest
    workload: Workload
    replicas: tuple[int, int] | None = None  # pinned (prefill, decode) role instances per ServingGroup
    ratio: tuple[int, int] | None = None  # pinned prefill:decode, used as the role instances


class SidePlanningError(Exception):
    """One side cannot be planned: which side, and the planner's error."""

    def __init__(self, side: Side, error: PlanningError) -> None:
        super().__init__(f"{side}: {error}")
        self.side = side
        self.error = error


@dataclass(frozen=True)
class PdPlan:
    prefill: Plan
    decode: Plan
    workload: Workload
    prefill_seconds: float  # one prompt on one prefill replica: the prefill part of TTFT
    prefill_per_second: float  # prompts one prefill role instance serves
    decode_speed: Throughput
    decode_per_second: float  # requests one decode role instance finishes
    aggregated_stall_seconds: float  # one prompt's prefill on the decode layout, served aggregated
    proposed: tuple[int, int]  # (prefill, decode) role instances the figures balance at
    replicas: tuple[int, int]  # what the ServingGroup gets: pinned, the pinned ratio, or `proposed`
    pays: bool
    lines: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def stall_steps(self) -> float:
        return self.aggregated_stall_seconds / self.decode_speed.step_seconds


def prefill_flops(model: ModelArchitecture, prompt_tokens: int) -> float:
    """FLOPs of one prompt's forward pass (the embedding is a lookup; the LM head runs for the last token)."""
    edges = edge_matrix_params(model) * (1 if model.tied_embeddings else 2)
    linear = 2 * (count_active_parameters(model) - edges) * prompt_tokens
    attention = (
        2 * model.full_attention_layers * prompt_tokens**2 * model.num_attention_heads * model.head_dim
    )
    return float(linear + attention)


def prefill_seconds(model: ModelArchitecture, plan: Plan, prompt_tokens: int, peak_flops: float) -> float:
    """One prompt's prefill on one replica of `plan` (its tensor parallel GPUs work on it together)."""
    return prefill_flops(model, prompt_tokens) / (plan.tensor_parallel_size * peak_flops * PREFILL_EFFICIENCY)


def _replica(plan: Plan) -> Replica:
    return Replica(
        data_parallel_size=plan.data_parallel_size,
        tensor_parallel_size=plan.tensor_parallel_size,
        pipeline_parallel_size=plan.pipeline_parallel_size,
        nodes=plan.nodes,
        weights=plan.memory.weights,
        budget=plan.memory,
    )


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


def _plan_side(side: Side, request: PlanRequest) -> Plan:
    try:
        return make_plan(request)
    except PlanningError as exc:
        raise SidePlanningError(side, exc) from None


def _prefill_plan(req: PdRequest, peak: float) -> tuple[Plan, tuple[str, ...]]:
    """The prefill plan: the pinned tensor parallel size, else the smallest that meets the TTFT target."""
    if req.prefill.tensor_parallel_size is not None:
        return _plan_side("prefill", req.prefill), ()
    plans: list[Plan] = []
    for tp in sorted(divisors_descending(req.prefill.shape.gpus_per_node)):
        try:
            plans.append(make_plan(replace(req.prefill, tensor_parallel_size=tp)))
        except PlanningError:
            continue
    if not plans:
        return _plan_side("prefill", req.prefill), ()  # raises the planner's own error for this shape
    prompt, target = req.workload.prompt_tokens, req.workload.ttft_seconds
    timed = [
        (prefill_seconds(req.prefill.model, _chosen(plan), prompt, peak), _chosen(plan)) for plan in plans
    ]
    fastest = min(timed, key=lambda pair: (pair[0], -pair[1].tensor_parallel_size))
    if target is None:
        return fastest[1], ("prefill TP: the fastest prefill that fits (no TTFT target declared)",)
    meeting = [pair for pair in timed if pair[0] <= target]
    if meeting:
        return meeting[0][1], (
            f"prefill TP: the smallest that prefills one prompt within the TTFT target {_ms(target)}",
        )
    return fastest[1], (
        f"prefill TP: none meets the TTFT target {_ms(target)}; the fastest, TP"
        f" {fastest[1].tensor_parallel_size}, takes {_ms(fastest[0])}",
    )


def _chosen(plan: Plan) -> Plan:
    """A plan the prefill search pinned to one TP: its lines say the TP was chosen, not pinned by the user."""
    pinned = f"; tensor parallel size pinned to {plan.tensor_parallel_size}"
    chosen = f"; tensor parallel size {plan.tensor_parallel_size}: the prefill TP (below)"
    return replace(plan, arithmetic=tuple(line.replace(pinned, chosen) for line in plan.arithmetic))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def plan_disaggregated(req: PdRequest) -> PdPlan:
    """Plan both sides and the ratio, or raise SidePlanningError naming the side that does not fit."""
    model, work = req.decode.model, req.workload
    gpu = gpu_of(req.prefill.shape)
    peak = gpu.dense_flops
    prefill, tp_lines = _prefill_plan(req, peak)
    decode = _plan_side("decode", req.decode)
    prompt, output = work.prompt_tokens, work.output_tokens
    flops = prefill_flops(model, prompt)
    ttft = prefill_seconds(model, prefill, prompt, peak)
    per_prefill = prefill.data_parallel_size * prefill.pipeline_parallel_size / ttft
    context = min(prompt + output, decode.max_model_len)
    speed = estimate(model, decode.dtype, req.decode.shape, _replica(decode), decode.max_model_len, context)
    decode_tokens = speed.tokens_per_second_per_node * decode.nodes
    per_decode = decode_tokens / output
    stall = prefill_seconds(model, decode, prompt, gpu_of(req.decode.shape).dense_flops)
    proposed = closest_ratio(per_decode / per_prefill)
    replicas, how = _used(req, proposed)
    pays = stall / speed.step_seconds >= PAYS_STALL_STEPS
    sequence = sequence_kv_bytes(decode.memory, context)
    held = decode.memory.kv_cache // sequence
    declared = "declared" if work.declared else "assumed (vllm bench serve's defaults): declare spec.workload"
    lines = (
        f"workload: prompts of {prompt:,} tokens, outputs of {output:,} tokens, {declared}",
        f"prefill FLOPs per prompt = 2 x {_linear_params(model):,} params run per token x {prompt:,}"
        f" + 2 x {model.full_attention_layers} layers x {prompt:,}^2"
        f" x {model.num_attention_heads * model.head_dim} attention width = {flops:.3g}",
        f"prefill of one prompt on TP {prefill.tensor_parallel_size} = {flops:.3g}"
        f" / ({prefill.tensor_parallel_size} x {peak / 1e12:,.0f} TFLOP/s x {PREFILL_EFFICIENCY})"
        f" = {_ms(ttft)}",
        *tp_lines,
        f"prefill role instance ({prefill.layout}, {prefill.nodes} node(s)) = {prefill.data_parallel_size}"
        f" replica(s) x {prefill.pipeline_parallel_size} stage(s) / {_ms(ttft)}"
        f" = {per_prefill:,.2f} prompts/s",
        f"decode sequence of {context:,} tokens = {format_bytes(sequence)} KV per GPU; the KV cache"
        f" ({format_gib(decode.memory.kv_cache)}) holds {held:,}; batch {speed.batch} per replica",
        f"decode role instance ({decode.layout}, {decode.nodes} node(s)): step {_ms(speed.step_seconds)}"
        f" -> {decode_tokens:,.0f} tokens/s / {output:,} output tokens = {per_decode:,.2f} requests/s",
        f"ratio prefill:decode = {per_decode:,.2f} / {per_prefill:,.2f} = {per_decode / per_prefill:.3g}"
        f" -> {proposed[0]}:{proposed[1]} (the fewest role instances within {RATIO_TOLERANCE:.0%},"
        f" at most {MAX_RATIO_SIDE} a side)",
        _pays_line(pays, stall, speed.step_seconds),
        f"role instances per ServingGroup: {replicas[0]} prefill + {replicas[1]} decode ({how})"
        f" = {replicas[0] * prefill.total_gpus + replicas[1] * decode.total_gpus} GPUs",
    )
    warnings = () if pays else (_not_paying(prompt, stall, speed.step_seconds),)
    return PdPlan(
        prefill=prefill,
        decode=decode,
        workload=work,
        prefill_seconds=ttft,
        prefill_per_second=per_prefill,
        decode_speed=speed,
        decode_per_second=per_decode,
        aggregated_stall_seconds=stall,
        proposed=proposed,
        replicas=replicas,
        pays=pays,
        lines=lines,
        warnings=warnings,
    )


def _linear_params(model: ModelArchitecture) -> int:
    return count_active_parameters(model) - edge_matrix_params(model) * (1 if model.tied_embeddings else 2)


def _used(req: PdRequest, proposed: tuple[int, int]) -> tuple[tuple[int, int], str]:
    if req.replicas is not None:
        return req.replicas, "pinned"
    if req.ratio is not None:
        return req.ratio, "the ratio given"
    return proposed, "proposed"


def _pays_line(pays: bool, stall: float, step: float) -> str:
    verdict = "pays" if pays else "does not pay"
    return (
        f"disaggregation {verdict}: served aggregated, one prompt's prefill stalls running decodes for"
        f" {_ms(stall)} = {stall / step:,.1f} decode steps of {_ms(step)} (pays from {PAYS_STALL_STEPS:g})"
    )


def _not_paying(prompt: int, stall: float, step: float) -> str:
    return (
        f"disaggregation does not pay for prompts of {prompt:,} tokens: their prefill ({_ms(stall)}) stalls"
        f" decodes for only {stall / step:,.1f} steps of {_ms(step)}, less than the KV transfer and the"
        " second hop cost; serve aggregated (remove disaggregation) unless longer prompts are expected"
    )
