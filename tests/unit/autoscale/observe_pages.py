"""Hand-written `/metrics` pages in the real engines' names and label sets (vLLM 0.33, SGLang 0.5.23),
for the observe tests. Not a test file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

VLLM_LABELS = 'engine="{engine}",model_name="m"'
TTFT_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5)
ITL_BOUNDS = (0.01, 0.025, 0.05, 0.1)


def _histogram(name: str, bounds: Sequence[float], series: Mapping[str, Sequence[float]]) -> list[str]:
    """`series` maps a label set to its per-bucket (not cumulative) counts, one more than `bounds`
    (the +Inf bucket)."""
    lines = [f"# HELP {name} A histogram.", f"# TYPE {name} histogram"]
    for labels, counts in series.items():
        cumulative = 0.0
        for bound, count in zip((*(str(b) for b in bounds), "+Inf"), counts, strict=True):
            cumulative += count
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
        lines.append(f"{name}_count{{{labels}}} {cumulative}")
        lines.append(f"{name}_sum{{{labels}}} 0.0")
    return lines


def _metric(kind: str, name: str, samples: Mapping[str, float]) -> list[str]:
    family = name.removesuffix("_total")
    lines = [f"# HELP {family} A {kind}.", f"# TYPE {family} {kind}"]
    lines += [f"{name}{{{labels}}} {value}" for labels, value in samples.items()]
    return lines


def vllm_page(
    *,
    waiting: float = 0,
    running: float = 0,
    kv: float = 0.0,
    prompt: float = 0,
    generation: float = 0,
    ttft: Sequence[float] = (0, 0, 0, 0, 0, 0),
    itl: Sequence[float] = (0, 0, 0, 0, 0),
    engines: Sequence[str] = ("0",),
    kv_name: str = "vllm:kv_cache_usage_perc",
    itl_name: str = "vllm:inter_token_latency_seconds",
) -> str:
    """A vLLM page; with several `engines` (data parallel) every engine has the same figures."""
    labels = [VLLM_LABELS.format(engine=e) for e in engines]
    lines: list[str] = []
    lines += _metric("gauge", "vllm:num_requests_running", dict.fromkeys(labels, running))
    lines += _metric("gauge", "vllm:num_requests_waiting", dict.fromkeys(labels, waiting))
    lines += _metric("gauge", kv_name, dict.fromkeys(labels, kv))
    lines += _metric("counter", "vllm:prompt_tokens_total", dict.fromkeys(labels, prompt))
    lines += _metric("counter", "vllm:generation_tokens_total", dict.fromkeys(labels, generation))
    lines += _histogram("vllm:time_to_first_token_seconds", TTFT_BOUNDS, dict.fromkeys(labels, ttft))
    lines += _histogram(itl_name, ITL_BOUNDS, dict.fromkeys(labels, itl))
    return "\n".join(lines) + "\n"


def sglang_labels(dp_rank: int, priority: str = "") -> str:
    return (
        f'dp_rank="{dp_rank}",engine_type="unified",model_name="m",moe_ep_rank="0",'
        f'pp_rank="0",priority="{priority}",tp_rank="0"'
    )


def sglang_page(
    *,
    queue: Sequence[float] = (0,),
    running: Sequence[float] = (0,),
    token_usage: Sequence[float] = (0.0,),
    prompt: Mapping[str, float] | None = None,
    generation: Mapping[str, float] | None = None,
    ttft: Mapping[str, Sequence[float]] | None = None,
    itl: Sequence[float] = (0, 0, 0, 0, 0),
    by_priority: Mapping[str, float] | None = None,
) -> str:
    """An SGLang page: one series per dp rank (the figures are per rank), counters and TTFT split
    by `is_streaming`, and with priority scheduling the per-priority queue next to the total."""
    ranks = range(len(queue))
    queue_series = {sglang_labels(r): queue[r] for r in ranks}
    for priority, value in (by_priority or {}).items():
        queue_series[sglang_labels(0, priority)] = value
    lines: list[str] = []
    lines += _metric("gauge", "sglang:num_running_reqs", {sglang_labels(r): running[r] for r in ranks})
    lines += _metric("gauge", "sglang:num_queue_reqs", queue_series)
    lines += _metric("gauge", "sglang:token_usage", {sglang_labels(r): token_usage[r] for r in ranks})
    base = 'engine_type="unified",model_name="m",moe_ep_rank="0",pp_rank="0",priority="",tp_rank="0"'
    for name, values in (("prompt", prompt or {}), ("generation", generation or {})):
        series = {f'{base},is_streaming="{s}"': v for s, v in values.items()}
        lines += _metric("counter", f"sglang:{name}_tokens_total", series)
    ttft_series = {f'{base},is_streaming="{s}"': counts for s, counts in (ttft or {}).items()}
    lines += _histogram("sglang:time_to_first_token_seconds", TTFT_BOUNDS, ttft_series)
    lines += _histogram("sglang:inter_token_latency_seconds", ITL_BOUNDS, {base: itl})
    return "\n".join(lines) + "\n"
