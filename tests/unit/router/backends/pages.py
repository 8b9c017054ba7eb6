"""`/metrics` pages shaped like vLLM 0.33's, built with prometheus_client, and a reference reader.

The families, label names and bucket layouts follow vLLM 0.33's `v1/metrics/loggers.py` (names as
listed in the shared routers reference, §7), plus the process, GC and HTTP series an API server
page also carries, so the page has the size and mix of a real one (histograms dominate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

from phalanx.router.backends import BackendLoad
from phalanx.sim.metrics import token_buckets

_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
         20.0, 40.0, 80.0, 160.0, 640.0)  # fmt: skip
_ITL = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
        40.0, 80.0)  # fmt: skip
_REQUEST = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
            240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
_HTTP = (0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0)


def vllm_page(
    *,
    engines: Sequence[tuple[float, float, float]] = ((3, 2, 0.25), (1, 4, 0.75)),
    model: str = "meta-llama/Llama-3.1-8B-Instruct",
    old_kv_name: bool = False,
    max_model_len: int = 32768,
) -> str:
    """A page of one API server in front of `len(engines)` data-parallel engines.

    `engines` gives (waiting, running, kv usage) per engine. `old_kv_name` writes the V0-era
    `vllm:gpu_cache_usage_perc` instead of `vllm:kv_cache_usage_perc`.
    """
    reg = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
        # The default collectors of the global registry, re-registered here for a realistic page.
        reg.register(collector)
    labels = ["model_name", "engine"]

    def gauge(name: str, extra: Iterable[str] = ()) -> Gauge:
        return Gauge(name, f"{name} gauge.", [*labels, *extra], registry=reg)

    def counter(name: str, extra: Iterable[str] = ()) -> Counter:
        return Counter(name, f"{name} counter.", [*labels, *extra], registry=reg)

    def histogram(name: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(name, f"{name} histogram.", labels, buckets=buckets, registry=reg)

    running = gauge("vllm:num_requests_running")
    waiting = gauge("vllm:num_requests_waiting")
    by_reason = gauge("vllm:num_requests_waiting_by_reason", ["reason"])
    kv = gauge("vllm:gpu_cache_usage_perc" if old_kv_name else "vllm:kv_cache_usage_perc")
    sleep = gauge("vllm:engine_sleep_state", ["sleep_state"])
    info = gauge("vllm:cache_config_info", ["block_size", "num_gpu_blocks", "enable_prefix_caching"])
    lora = Gauge(
        "vllm:lora_requests_info",
        "Running stats on lora requests.",
        ["max_lora", "running_lora_adapters", "waiting_lora_adapters"],
        registry=reg,
    )
    lora.labels("4", "sql-lora,chat-lora", "").set(1.7e9)
    counters = [
        counter(name)
        for name in (
            "vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:external_prefix_cache_queries",
            "vllm:external_prefix_cache_hits", "vllm:num_preemptions", "vllm:prompt_tokens",
            "vllm:generation_tokens", "vllm:prompt_tokens_cached",
        )
    ]  # fmt: skip
    success = counter("vllm:request_success", ["finished_reason"])
    tokens = token_buckets(max_model_len)
    histograms = [
        histogram("vllm:time_to_first_token_seconds", _TTFT),
        histogram("vllm:inter_token_latency_seconds", _ITL),
        histogram("vllm:request_time_per_output_token_seconds", _ITL),
        *(
            histogram(f"vllm:{name}", _REQUEST)
            for name in (
                "e2e_request_latency_seconds", "request_queue_time_seconds", "request_inference_time_seconds",
                "request_prefill_time_seconds", "request_decode_time_seconds",
            )
        ),
        *(
            histogram(f"vllm:{name}", tokens)
            for name in (
                "request_prompt_tokens", "request_generation_tokens", "iteration_tokens_total",
                "request_max_num_generation_tokens", "request_params_n", "request_params_max_tokens",
            )
        ),
    ]  # fmt: skip
    for index, (w, r, usage) in enumerate(engines):
        lab = {"model_name": model, "engine": str(index)}
        waiting.labels(**lab).set(w)
        running.labels(**lab).set(r)
        kv.labels(**lab).set(usage)
        for reason in ("capacity", "deferred"):
            by_reason.labels(**lab, reason=reason).set(w)
        for state in ("awake", "weights_offloaded", "discard_all"):
            sleep.labels(**lab, sleep_state=state).set(1 if state == "awake" else 0)
        info.labels(**lab, block_size="16", num_gpu_blocks="27000", enable_prefix_caching="True").set(1)
        for i, c in enumerate(counters):
            c.labels(**lab).inc(1000 * (i + 1) + index)
        for reason in ("stop", "length", "abort", "error"):
            success.labels(**lab, finished_reason=reason).inc(17)
        for i, h in enumerate(histograms):
            for k in range(5):
                h.labels(**lab).observe(0.07 * (i + 1) * (k + 1))
    http = Histogram(
        "http_request_duration_seconds",
        "Latency with only few buckets by handler.",
        ["handler", "method"],
        buckets=_HTTP,
        registry=reg,
    )
    for handler in ("/v1/chat/completions", "/v1/completions", "/metrics", "/health"):
        http.labels(handler, "POST" if handler.startswith("/v1") else "GET").observe(0.02)
    return generate_latest(reg).decode()


# A hand-written page in vLLM 0.33's shape with everything a line scan can trip on: both KV
# names (the new one wins), several engines and models, label values holding commas, braces,
# escaped quotes, escaped newlines and the gauge names themselves, NaN, +Inf, exponents, a
# timestamp, longer names sharing the prefix, an indented line and a CRLF line.
CRAFTED = (
    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
    'vllm:num_requests_waiting{engine="1",model_name="m"} 2e0 1712345678000\n'
    'vllm:num_requests_waiting{engine="2",model_name="m"} NaN\n'
    "# HELP vllm:num_requests_waiting_by_reason Waiting requests by reason.\n"
    "# TYPE vllm:num_requests_waiting_by_reason gauge\n"
    'vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 100.0\n'
    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
    "# TYPE vllm:num_requests_running gauge\n"
    'vllm:num_requests_running{engine="0",model_name="m"} 1.5e+01\n'
    '  vllm:num_requests_running{engine="1",model_name="m,x}y \\"q\\" \\\\"} 5\r\n'
    "vllm:num_requests_running_total 1000\n"
    "# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. vllm:kv_cache_usage_perc{} 9\n"
    "# TYPE vllm:gpu_cache_usage_perc gauge\n"
    'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.9\n'
    "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
    "# TYPE vllm:kv_cache_usage_perc gauge\n"
    'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2\n'
    'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 4.0E-1\n'
    'vllm:kv_cache_usage_perc{engine="2",model_name="m"} +Inf\n'
    'vllm:lora_requests_info{max_lora="1",running_lora_adapters="vllm:num_requests_waiting 7",'
    'waiting_lora_adapters=""} 1.0\n'
    'other_metric{label="\\nvllm:num_requests_running 99"} 1\n'
)
CRAFTED_LOAD = BackendLoad(waiting=5.0, running=20.0, kv_cache_usage=0.3)


def reference_load(text: str) -> BackendLoad:
    """The same answer as `parse_load`, through prometheus_client's full parser (a test oracle)."""
    samples: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if math.isfinite(sample.value):
                samples.setdefault(sample.name, []).append(sample.value)

    def total(name: str) -> float | None:
        values = samples.get(name)
        return sum(values) if values else None

    kv = samples.get("vllm:kv_cache_usage_perc") or samples.get("vllm:gpu_cache_usage_perc")
    return BackendLoad(
        waiting=total("vllm:num_requests_waiting"),
        running=total("vllm:num_requests_running"),
        kv_cache_usage=min(max(sum(kv) / len(kv), 0.0), 1.0) if kv else None,
    )
