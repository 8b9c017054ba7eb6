"""A prefill/decode plan's figures as lines a person can check by hand, and the verdict when PD does not
pay."""

from __future__ import annotations

from phalanx.planner.memory import sequence_kv_bytes
from phalanx.planner.pd_figures import (
    MAX_RATIO_SIDE,
    PAYS_STALL_STEPS,
    PREFILL_EFFICIENCY,
    RATIO_TOLERANCE,
    PdPlan,
    linear_params,
)
from phalanx.planner.types import ModelArchitecture
from phalanx.planner.units import format_bytes, format_gib


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def _prefill_lines(pd: PdPlan, model: ModelArchitecture) -> tuple[str, ...]:
    prefill, prompt, flops = pd.prefill, pd.workload.prompt_tokens, pd.prefill_flops
    tp = prefill.tensor_parallel_size
    return (
        f"prefill FLOPs per prompt = 2 x {linear_params(model):,} params run per token x {prompt:,}"
        f" + 2 x {model.full_attention_layers} layers x {prompt:,}^2"
        f" x {model.num_attention_heads * model.head_dim} attention width = {flops:.3g}",
        f"prefill of one prompt on TP {tp} = {flops:.3g} / ({tp} x {pd.peak_flops / 1e12:,.0f} TFLOP/s"
        f" x {PREFILL_EFFICIENCY}) = {ms(pd.prefill_seconds)}"
        + (" (GPU not in the catalog: its peak assumed)" if pd.peak_assumed else ""),
        f"prefill TP: {pd.prefill_tp_reason}",
        f"prefill role instance ({prefill.layout}, {prefill.nodes} node(s)) = {prefill.data_parallel_size}"
        f" replica(s) x {prefill.pipeline_parallel_size} stage(s) / {ms(pd.prefill_seconds)}"
        f" = {pd.prefill_per_second:,.2f} prompts/s",
    )


def _decode_lines(pd: PdPlan) -> tuple[str, ...]:
    decode, speed = pd.decode, pd.decode_speed
    sequence = sequence_kv_bytes(decode.memory, pd.decode_context)
    tokens = speed.tokens_per_second_per_node * decode.nodes
    return (
        f"decode sequence of {pd.decode_context:,} tokens = {format_bytes(sequence)} KV per GPU; the KV cache"
        f" ({format_gib(decode.memory.kv_cache)}) holds {decode.memory.kv_cache // sequence:,};"
        f" batch {speed.batch} per replica",
        f"decode role instance ({decode.layout}, {decode.nodes} node(s)): step {ms(speed.step_seconds)}"
        f" -> {tokens:,.0f} tokens/s / {pd.workload.output_tokens:,} output tokens"
        f" = {pd.decode_per_second:,.2f} requests/s",
    )


def pd_lines(pd: PdPlan, model: ModelArchitecture) -> tuple[str, ...]:
    """From the workload to the role instances, each line naming its inputs and its result."""
    work = pd.workload
    declared = "declared" if work.declared else "assumed (vllm bench serve's defaults): declare spec.workload"
    balance = pd.decode_per_second / pd.prefill_per_second
    step = pd.decode_speed.step_seconds
    verdict = "pays" if pd.pays else "does not pay"
    gpus = pd.replicas[0] * pd.prefill.total_gpus + pd.replicas[1] * pd.decode.total_gpus
    return (
        f"workload: prompts of {work.prompt_tokens:,} tokens, outputs of {work.output_tokens:,} tokens,"
        f" {declared}",
        *_prefill_lines(pd, model),
        *_decode_lines(pd),
        f"ratio prefill:decode = {pd.decode_per_second:,.2f} / {pd.prefill_per_second:,.2f} = {balance:.3g}"
        f" -> {pd.proposed[0]}:{pd.proposed[1]} (the fewest role instances within {RATIO_TOLERANCE:.0%},"
        f" at most {MAX_RATIO_SIDE} a side)",
        f"disaggregation {verdict}: served aggregated, one prompt's prefill stalls running decodes for"
        f" {ms(pd.aggregated_stall_seconds)} = {pd.stall_steps:,.1f} decode steps of {ms(step)}"
        f" (pays from {PAYS_STALL_STEPS:g})",
        f"role instances per ServingGroup: {pd.replicas[0]} prefill + {pd.replicas[1]} decode"
        f" ({pd.replicas_from}) = {gpus} GPUs",
    )


def pd_verdicts(pd: PdPlan) -> tuple[str, ...]:
    """The warning when disaggregation does not pay for this workload (none when it does)."""
    if pd.pays:
        return ()
    return (
        f"disaggregation does not pay for prompts of {pd.workload.prompt_tokens:,} tokens: their prefill"
        f" ({ms(pd.aggregated_stall_seconds)}) stalls decodes for only {pd.stall_steps:,.1f} steps of"
        f" {ms(pd.decode_speed.step_seconds)}, less than the KV transfer and the second hop cost;"
        " serve aggregated (remove disaggregation) unless longer prompts are expected",
    )
