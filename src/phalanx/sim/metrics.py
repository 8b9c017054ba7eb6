"""vLLM 0.33's Prometheus metrics, in a registry of their own per server (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from phalanx.sim.scheduler import Scheduler, StepPlan, StepResult

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0)  # fmt: skip
# vLLM's NixlConnector buckets for transfer time (seconds).
_XFER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0)
_REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


def token_buckets(max_value: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 series up to `max_value` (its `build_1_2_5_buckets`)."""
    buckets: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(buckets)
            buckets.append(float(value))
        exponent += 1


class SimMetrics:
    def __init__(self, model_name: str, *, max_model_len: int, block_size: int, num_gpu_blocks: int) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name", "engine"]
        self._labels = {"model_name": model_name, "engine": "0"}
        reg = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, labels, registry=reg)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=reg)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=reg)

        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        info = Gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            [*labels, "block_size", "num_gpu_blocks", "enable_prefix_caching", "cache_dtype"],
            registry=reg,
        )
        info.labels(
            **self._labels,
            block_size=str(block_size),
            num_gpu_blocks=str(num_gpu_blocks),
            enable_prefix_caching="True",
            cache_dtype="auto",
        ).set(1)
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.prefix_queries = counter("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.")
        self.prefix_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.")
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemptions.")
        self.success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*labels, "finished_reason"],
            registry=reg,
        )
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token.", _TTFT_BUCKETS)
        self.itl = histogram("vllm:inter_token_latency_seconds", "Inter-token latency.", _ITL_BUCKETS)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "End-to-end latency.", _REQUEST_BUCKETS)
        self.queue = histogram(
            "vllm:request_queue_time_seconds", "Time in the WAITING phase.", _REQUEST_BUCKETS
        )
        self.inference = histogram(
            "vllm:request_inference_time_seconds", "Time in the RUNNING phase.", _REQUEST_BUCKETS
        )
        token_hist = token_buckets(max_model_len)
        self.request_prompt = histogram(
            "vllm:request_prompt_tokens", "Prompt tokens per request.", token_hist
        )
        self.request_generation = histogram(
            "vllm:request_generation_tokens", "Generation tokens per request.", token_hist
        )
        # Children with no `finished_reason` exist from the start, so scrapes see every series.
        for metric in (self.running, self.waiting, self.kv_usage):
            metric.labels(**self._labels).set(0)
        for c in (self.prompt_tokens, self.generation_tokens, self.prefix_queries, self.prefix_hits):
            c.labels(**self._labels)
        self.preemptions.labels(**self._labels)
        for h in (
            self.ttft,
            self.itl,
            self.e2e,
            self.queue,
            self.inference,
            self.request_prompt,
            self.request_generation,
        ):
            h.labels(**self._labels)
        # KV handed between prefill and decode engines: vLLM NixlConnector's names where it has
        # one, phalanx_sim_* for what vLLM does not export.
        self.xfer_time = histogram(
            "vllm:nixl_xfer_time_seconds",
            "Histogram of transfer duration for NIXL KV Cache transfers.",
            _XFER_BUCKETS,
        )
        self.xfer_bytes = histogram(
            "vllm:nixl_bytes_transferred",
            "Histogram of bytes transferred per NIXL KV Cache transfers.",
            tuple(float(2**k) for k in range(10, 36, 2)),
        )
        self.failed_transfers = counter(
            "vllm:nixl_num_failed_transfers", "Number of failed NIXL KV Cache transfers."
        )
        self.expired_leases = counter(
            "vllm:nixl_num_kv_expired_reqs", "Number of requests that had their KV expire (prefill side)."
        )
        self.leased_blocks = gauge(
            "phalanx_sim_kv_leased_blocks", "KV blocks held for a remote decode under a lease."
        )
        self.leaked_blocks = gauge(
            "phalanx_sim_kv_leaked_blocks", "KV blocks held by no live request and no live lease (must be 0)."
        )
        for metric in (self.leased_blocks, self.leaked_blocks):
            metric.labels(**self._labels).set(0)
        for c in (self.failed_transfers, self.expired_leases):
            c.labels(**self._labels)
        for h in (self.xfer_time, self.xfer_bytes):
            h.labels(**self._labels)

    def observe_schedule(self, plan: StepPlan) -> None:
        lab = self._labels
        if plan.preempted:
            self.preemptions.labels(**lab).inc(len(plan.preempted))
        if plan.prefix_queries:
            self.prefix_queries.labels(**lab).inc(plan.prefix_queries)
            self.prefix_hits.labels(**lab).inc(plan.prefix_hits)

    def observe_result(self, result: StepResult) -> None:
        lab = self._labels
        if result.outputs:
            self.generation_tokens.labels(**lab).inc(len(result.outputs))
        for out in result.outputs:
            (self.ttft if out.first else self.itl).labels(**lab).observe(out.interval)
        for done in result.finished:
            self.success.labels(**lab, finished_reason=done.finish_reason).inc()
            self.e2e.labels(**lab).observe(done.e2e)
            self.queue.labels(**lab).observe(done.queue_time)
            # From first scheduled to the last token, as vLLM counts it (preemptions included).
            self.inference.labels(**lab).observe(done.e2e - done.queue_time)
            self.request_prompt.labels(**lab).observe(done.prompt_tokens)
            self.request_generation.labels(**lab).observe(done.generation_tokens)

    def observe_new_request(self, prompt_tokens: int) -> None:
        self.prompt_tokens.labels(**self._labels).inc(prompt_tokens)

    def observe_abort(self) -> None:
        self.success.labels(**self._labels, finished_reason="abort").inc()

    def update_gauges(self, scheduler: Scheduler) -> None:
        lab = self._labels
        self.running.labels(**lab).set(len(scheduler.running))
        self.waiting.labels(**lab).set(len(scheduler.waiting))
        self.kv_usage.labels(**lab).set(scheduler.blocks.usage)

    def update_kv(self, leased_blocks: int, leaked_blocks: int) -> None:
        self.leased_blocks.labels(**self._labels).set(leased_blocks)
        self.leaked_blocks.labels(**self._labels).set(leaked_blocks)

    def observe_expired_lease(self) -> None:
        self.expired_leases.labels(**self._labels).inc()

    def observe_transfer(self, seconds: float, num_bytes: int) -> None:
        self.xfer_time.labels(**self._labels).observe(seconds)
        self.xfer_bytes.labels(**self._labels).observe(num_bytes)

    def observe_failed_transfer(self) -> None:
        self.failed_transfers.labels(**self._labels).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
