"""One entry pod's `/metrics` page into the unit's fields (vLLM, SGLang, `phalanx sim`).

Gauges are read as they are: waiting and running summed over the page's label sets (data-parallel
engines, several models), KV-cache usage their mean. What needs a window comes from the difference
to the previous page: tokens per second from the prompt and generation token counters, TTFT and
ITL p95 from the histograms' bucket counts (so a p95 describes the requests of this window only,
not the engine's whole life), the mean seconds a request held a batch slot from the
inference-time histogram's sum and count. A counter that went down (the engine restarted) voids the window:
its fields are unknown and this page becomes the new start. Unknown is None, never 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from phalanx.autoscale.observe.prom import Sample, first_present, parse_page, series_key
from phalanx.autoscale.observe.quantile import histogram_quantile
from phalanx.autoscale.observe.snapshot import PageSnapshot, growth


@dataclass(frozen=True)
class EngineMetricNames:
    """Where each field comes from: sample names, best first; the first one on the page is used.
    The histograms are named by family (their `_bucket` samples are read)."""

    waiting: tuple[str, ...] = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
    running: tuple[str, ...] = ("vllm:num_requests_running", "sglang:num_running_reqs")
    # vllm:gpu_cache_usage_perc is vLLM's earlier name for kv_cache_usage_perc.
    kv_usage: tuple[str, ...] = (
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "sglang:token_usage",
    )
    ttft: tuple[str, ...] = ("vllm:time_to_first_token_seconds", "sglang:time_to_first_token_seconds")
    # vllm:time_per_output_token_seconds is vLLM's earlier name for the per-token histogram.
    itl: tuple[str, ...] = (
        "vllm:inter_token_latency_seconds",
        "vllm:time_per_output_token_seconds",
        "sglang:inter_token_latency_seconds",
    )
    prompt_tokens: tuple[str, ...] = ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total")
    generation_tokens: tuple[str, ...] = ("vllm:generation_tokens_total", "sglang:generation_tokens_total")
    # Seconds a finished request held a batch slot (vLLM's RUNNING phase; SGLang 0.5.23 has no
    # such histogram); its `_sum` and `_count` are read.
    request_time: tuple[str, ...] = ("vllm:request_inference_time_seconds",)
    # Prompt tokens queued for prefill: neither vLLM 0.33 nor SGLang 0.5.23 exports such a gauge.
    prefill_queued_tokens: tuple[str, ...] = ()

    def gauges(self) -> frozenset[str]:
        return frozenset({*self.waiting, *self.running, *self.kv_usage, *self.prefill_queued_tokens})

    def windowed(self) -> frozenset[str]:
        """The sample names a snapshot keeps: counters and histogram buckets."""
        buckets = {f"{family}_bucket" for family in (*self.ttft, *self.itl)}
        totals = {f"{family}_{part}" for family in self.request_time for part in ("sum", "count")}
        return frozenset({*self.prompt_tokens, *self.generation_tokens, *buckets, *totals})


DEFAULT_NAMES = EngineMetricNames()


@dataclass(frozen=True)
class UnitFields:
    """What one entry pod's page says about its unit; None: not known from this page."""

    waiting: float | None = None
    running: float | None = None
    kv_usage: float | None = None
    ttft_p95: float | None = None
    itl_p95: float | None = None
    prefill_queued_tokens: float | None = None
    tokens_per_second: float | None = None  # prompt and generation tokens
    # The prompt part alone: with the router's prompt tokens arriving, it gives the output
    # tokens to expect per prompt token (`assemble`).
    prompt_tokens_per_second: float | None = None
    # Mean seconds the requests finished in the window held a batch slot; None when none finished.
    request_seconds: float | None = None


UNKNOWN = UnitFields()


def observe_unit(
    text: str,
    previous: PageSnapshot | None,
    now: float,
    names: EngineMetricNames = DEFAULT_NAMES,
    quantile: float = 0.95,
) -> tuple[UnitFields, PageSnapshot | None]:
    """The unit's fields from its entry pod's page read at `now`, and the snapshot to pass next
    time. A page that is unreadable or has none of the engine's metrics (an error page, another
    program) gives no fields and keeps `previous`, so the next good page still has a window."""
    samples = parse_page(text)
    kept = names.windowed()
    known = kept | names.gauges()
    if samples is None or not any(s.name in known for s in samples):
        return UNKNOWN, previous
    snapshot = PageSnapshot(now, {series_key(s): s.value for s in samples if s.name in kept})
    deltas = growth(previous, snapshot)
    fields = UnitFields(
        waiting=_gauge(samples, names.waiting, sum),
        running=_gauge(samples, names.running, sum),
        kv_usage=_gauge(samples, names.kv_usage, _mean),
        prefill_queued_tokens=_gauge(samples, names.prefill_queued_tokens, sum),
    )
    if deltas is None or previous is None:
        return fields, snapshot
    window = now - previous.time
    return (
        replace(
            fields,
            ttft_p95=_quantile(samples, deltas, names.ttft, quantile),
            itl_p95=_quantile(samples, deltas, names.itl, quantile),
            tokens_per_second=_rate(samples, deltas, (names.prompt_tokens, names.generation_tokens), window),
            prompt_tokens_per_second=_rate(samples, deltas, (names.prompt_tokens,), window),
            request_seconds=_mean_in_window(samples, deltas, names.request_time),
        ),
        snapshot,
    )


def _gauge(
    samples: Sequence[Sample], candidates: tuple[str, ...], combine: Callable[[list[float]], float]
) -> float | None:
    name = first_present(samples, candidates)
    # SGLang with priority scheduling adds per-priority series beside the total (priority="").
    # None of these gauges can be negative; a negative value is read as 0, not as negative load.
    values = [max(s.value, 0.0) for s in samples if s.name == name and not s.labels.get("priority")]
    return combine(values) if values else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _quantile(
    samples: Sequence[Sample], deltas: dict[str, float], families: tuple[str, ...], quantile: float
) -> float | None:
    name = first_present(samples, tuple(f"{family}_bucket" for family in families))
    merged: dict[float, float] = defaultdict(float)
    for sample in samples:
        if sample.name == name and "le" in sample.labels:
            try:
                bound = float(sample.labels["le"])
            except ValueError:
                return None
            merged[bound] += deltas.get(series_key(sample), 0.0)
    return histogram_quantile(quantile, merged) if merged else None


def _rate(
    samples: Sequence[Sample], deltas: dict[str, float], counters: tuple[tuple[str, ...], ...], window: float
) -> float | None:
    total = 0.0
    for candidates in counters:
        name = first_present(samples, candidates)
        if name is None:
            return None
        total += sum(deltas.get(series_key(s), 0.0) for s in samples if s.name == name)
    return total / window


def _mean_in_window(
    samples: Sequence[Sample], deltas: dict[str, float], families: tuple[str, ...]
) -> float | None:
    """A histogram's mean over the window: the growth of its `_sum` over that of its `_count`,
    every label set together (data-parallel engines)."""
    family = first_present(samples, tuple(f"{f}_count" for f in families))
    if family is None:
        return None
    family = family.removesuffix("_count")
    count = sum(deltas.get(series_key(s), 0.0) for s in samples if s.name == f"{family}_count")
    total = sum(deltas.get(series_key(s), 0.0) for s in samples if s.name == f"{family}_sum")
    return total / count if count > 0 else None


def observe_units(
    pages: Mapping[str, tuple[str, str | None]],
    previous: Mapping[str, PageSnapshot],
    now: float,
    names: EngineMetricNames = DEFAULT_NAMES,
) -> tuple[dict[str, UnitFields], dict[str, PageSnapshot]]:
    """Every unit's fields from its entry pod's page (`pages`: unit name -> (entry endpoint, page,
    None when it could not be read)), and the snapshots to pass next time, by endpoint. A page not
    read is unknown and keeps the endpoint's last snapshot; an endpoint not in `pages` (its pod is
    gone) takes its window with it."""
    fields: dict[str, UnitFields] = {}
    kept: dict[str, PageSnapshot] = {}
    for unit, (endpoint, page) in pages.items():
        before = previous.get(endpoint)
        if page is None:
            fields[unit] = UNKNOWN
            snapshot = before
        else:
            fields[unit], snapshot = observe_unit(page, before, now, names)
        if snapshot is not None:
            kept[endpoint] = snapshot
    return fields, kept
