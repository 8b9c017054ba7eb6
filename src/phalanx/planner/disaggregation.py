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

from dataclasses import dataclass, replace

from phalanx.planner.parallelism import divisors_descending
from phalanx.planner.pd_explain import ms, pd_lines, pd_verdicts
from phalanx.planner.pd_figures import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    MAX_RATIO_SIDE,
    PAYS_STALL_STEPS,
    PREFILL_EFFICIENCY,
    RATIO_TOLERANCE,
    PdPlan,
    Side,
    Workload,
    closest_ratio,
    prefill_flops,
    prefill_seconds,
)
from phalanx.planner.search import make_plan
from phalanx.planner.throughput import UNKNOWN_GPU, Replica, estimate, gpu_of
from phalanx.planner.types import Plan, PlanningError, PlanRequest

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "DEFAULT_PROMPT_TOKENS",
    "MAX_RATIO_SIDE",
    "PAYS_STALL_STEPS",
    "PREFILL_EFFICIENCY",
    "RATIO_TOLERANCE",
    "PdPlan",
    "PdRequest",
    "SidePlanningError",
    "Workload",
    "closest_ratio",
    "plan_disaggregated",
    "prefill_flops",
    "prefill_seconds",
]


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


def _replica(plan: Plan) -> Replica:
    return Replica(
        data_parallel_size=plan.data_parallel_size,
        tensor_parallel_size=plan.tensor_parallel_size,
        pipeline_parallel_size=plan.pipeline_parallel_size,
        nodes=plan.nodes,
        weights=plan.memory.weights,
        budget=plan.memory,
    )


def _plan_side(side: Side, request: PlanRequest) -> Plan:
    try:
        return make_plan(request)
    except PlanningError as exc:
        raise SidePlanningError(side, exc) from None


def _prefill_plan(req: PdRequest, peak: float) -> tuple[Plan, str]:
    """The prefill plan: the pinned tensor parallel size, else the smallest that meets the TTFT target."""
    if req.prefill.tensor_parallel_size is not None:
        return _plan_side("prefill", req.prefill), "pinned for the prefill side"
    plans: list[Plan] = []
    for tp in sorted(divisors_descending(req.prefill.shape.gpus_per_node)):
        try:
            plans.append(make_plan(replace(req.prefill, tensor_parallel_size=tp)))
        except PlanningError:
            continue
    if not plans:
        return _plan_side("prefill", req.prefill), ""  # raises the planner's own error for this shape
    prompt, target = req.workload.prompt_tokens, req.workload.ttft_seconds
    timed = [
        (prefill_seconds(req.prefill.model, _chosen(plan), prompt, peak), _chosen(plan)) for plan in plans
    ]
    fastest = min(timed, key=lambda pair: (pair[0], -pair[1].tensor_parallel_size))
    if target is None:
        return fastest[1], "the fastest prefill that fits (no TTFT target declared)"
    meeting = [pair for pair in timed if pair[0] <= target]
    if meeting:
        return meeting[0][1], f"the smallest that prefills one prompt within the TTFT target {ms(target)}"
    return fastest[1], (
        f"none meets the TTFT target {ms(target)}; the fastest, TP {fastest[1].tensor_parallel_size},"
        f" takes {ms(fastest[0])}"
    )


def _chosen(plan: Plan) -> Plan:
    """A plan the prefill search pinned to one TP: its lines say the TP was chosen, not pinned by the user."""
    pinned = f"; tensor parallel size pinned to {plan.tensor_parallel_size}"
    chosen = f"; tensor parallel size {plan.tensor_parallel_size}: the prefill TP (below)"
    return replace(plan, arithmetic=tuple(line.replace(pinned, chosen) for line in plan.arithmetic))


def plan_disaggregated(req: PdRequest) -> PdPlan:
    """Plan both sides and the ratio, or raise SidePlanningError naming the side that does not fit."""
    model, work = req.decode.model, req.workload
    gpu = gpu_of(req.prefill.shape)
    peak = gpu.dense_flops
    prefill, tp_reason = _prefill_plan(req, peak)
    decode = _plan_side("decode", req.decode)
    prompt, output = work.prompt_tokens, work.output_tokens
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
    pd = PdPlan(
        prefill=prefill,
        decode=decode,
        workload=work,
        prefill_flops=prefill_flops(model, prompt),
        peak_flops=peak,
        peak_assumed=gpu.name == UNKNOWN_GPU.name,
        prefill_seconds=ttft,
        prefill_per_second=per_prefill,
        prefill_tp_reason=tp_reason,
        decode_context=context,
        decode_speed=speed,
        decode_per_second=per_decode,
        aggregated_stall_seconds=stall,
        proposed=proposed,
        replicas=replicas,
        replicas_from=how,
        pays=pays,
    )
    return replace(pd, lines=pd_lines(pd, model), warnings=pd_verdicts(pd))


def _used(req: PdRequest, proposed: tuple[int, int]) -> tuple[tuple[int, int], str]:
    if req.replicas is not None:
        return req.replicas, "pinned"
    if req.ratio is not None:
        return req.ratio, "the ratio given"
    return proposed, "proposed"
