"""The router's own Prometheus metrics, in a registry of its own so several routers (and tests) coexist."""

from __future__ import annotations

import contextlib
import math
import time
from bisect import bisect_left
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from phalanx.router.usage import Usage

_M = TypeVar("_M", bound=MetricWrapperBase)

# LLM requests run from milliseconds (errors, embeddings) to many minutes (long generations).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
_TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# vLLM's own inter-token buckets start at 10 ms; a router also sees sub-millisecond bursts.
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)

# Label for requests that never reached an endpoint; keeps the label set bounded.
NO_ENDPOINT = ""
# Models named by clients but not served: one label value, not one per typo.
UNKNOWN_MODEL = "_unknown"
# nginx's code for "client closed the request before the answer".
CLIENT_CLOSED = 499
# Per-key usage labels: requests without a valid key share one value, and keys past the cap
# share another (a key file is small; the cap keeps a churning one from growing the series).
UNAUTHENTICATED = "_unauthenticated"
OTHER_KEYS = "_other"
KEY_LABELS_MAX = 200


class PendingCounter:
    """Increments of one counter series, added to it when its registry is read (`Pending`)."""

    __slots__ = ("_child", "_pending")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self._pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:  # refused here, as the series itself would, not at the next scrape
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._pending += amount

    def flush(self) -> None:
        if self._pending:
            self._child.inc(self._pending)
            self._pending = 0.0


class PendingGauge:
    """The latest value set on one gauge series, set on it when its registry is read (`Pending`)."""

    __slots__ = ("_child", "_dirty", "_value")

    def __init__(self, child: Gauge) -> None:
        self._child = child
        self._value = 0.0
        self._dirty = False

    def set(self, value: float) -> None:
        self._value = value
        self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self._child.set(self._value)
            self._dirty = False


class PendingHistogram:
    """Observations of one histogram series, counted into its buckets here and added to the series'
    buckets and sum when its registry is read (`Pending`): the same bucket as `observe` picks (the
    first upper bound at or above the value; NaN adds to the sum only)."""

    __slots__ = ("_bounds", "_child", "_counts", "_dirty", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        self._dirty = False

    def observe(self, amount: float) -> None:
        self._sum += amount
        self._dirty = True
        if not math.isnan(amount):
            self._counts[bisect_left(self._bounds, amount)] += 1

    def flush(self) -> None:
        if not self._dirty:
            return
        counts = self._counts
        buckets: list[Any] = self._child._buckets
        for i in range(len(counts)):
            if counts[i]:
                buckets[i].inc(counts[i])
                counts[i] = 0
        sum_value: Any = self._child._sum
        sum_value.inc(self._sum)
        self._sum = 0.0
        self._dirty = False


PendingSeries = PendingCounter | PendingGauge | PendingHistogram
_S = TypeVar("_S", PendingCounter, PendingGauge, PendingHistogram)


class Pending:
    """Per-request metric updates kept in native counts and applied to prometheus_client's series
    when the registry is collected (a scrape, `get_sample_value`): an update through
    prometheus_client costs four Python calls and a lock, about half the interpreted work per
    request of the compiled router (bench/router/results.md). Registered before any other
    collector, so every read sees every update; names, labels and values are the series' own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._series: dict[tuple[Any, tuple[str, ...]], PendingSeries] = {}
        registry.register(self)  # a Collector by its two methods

    def counter(self, metric: Counter, values: tuple[str, ...]) -> PendingCounter:
        found = self._series.get((metric, values))
        if isinstance(found, PendingCounter):
            return found
        return self._keep(metric, values, PendingCounter(metric.labels(*values)))

    def gauge(self, metric: Gauge, values: tuple[str, ...]) -> PendingGauge:
        found = self._series.get((metric, values))
        return (
            found
            if isinstance(found, PendingGauge)
            else self._keep(metric, values, PendingGauge(metric.labels(*values)))
        )

    def histogram(self, metric: Histogram, values: tuple[str, ...]) -> PendingHistogram:
        found = self._series.get((metric, values))
        if isinstance(found, PendingHistogram):
            return found
        return self._keep(metric, values, PendingHistogram(metric.labels(*values)))

    def _keep(self, metric: MetricWrapperBase, values: tuple[str, ...], series: _S) -> _S:
        self._series[(metric, values)] = series
        return series

    def forget(self, metric: MetricWrapperBase, values: tuple[str, ...]) -> None:
        found = self._series.pop((metric, values), None)
        if found is not None:
            found.flush()  # into the series about to be removed: nothing left to apply later

    def flush(self) -> None:
        for series in self._series.values():
            series.flush()

    def collect(self) -> list[Any]:
        self.flush()
        return []

    def describe(self) -> list[Any]:
        return []


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pending = Pending(self.registry)
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._relay_series: dict[
            tuple[str, str], tuple[PendingHistogram, PendingHistogram, PendingHistogram]
        ] = {}
        self.requests = Counter(
            "phalanx_router_requests",
            "Requests answered, by model, endpoint that served them and status code.",
            ["model", "endpoint", "code"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "phalanx_router_in_flight_requests",
            "Requests currently proxied to each endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "phalanx_router_request_duration_seconds",
            "From request arrival to the last byte sent to the client, by model and endpoint.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttfb = Histogram(
            "phalanx_router_time_to_first_byte_seconds",
            "From request arrival to the first body byte relayed to the client.",
            ["model"],
            buckets=_TTFB_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "phalanx_router_time_to_first_token_seconds",
            "Streams only: from request arrival to the first complete event relayed, by model and endpoint.",
            ["model", "endpoint"],
            buckets=_TTFB_BUCKETS,
            registry=self.registry,
        )
        self.itl = Histogram(
            "phalanx_router_inter_token_latency_seconds",
            "Streams only: time between successive events relayed (one per token with vLLM's default).",
            ["model", "endpoint"],
            buckets=_ITL_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "phalanx_router_errors",
            "Requests that ended in an error, by kind (bad_request, unknown_model, no_endpoint, "
            "upstream_unreachable, upstream_timeout, upstream_error, stream_broken, client_gone, ...).",
            ["kind"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "phalanx_router_routing_decisions",
            "Endpoints chosen, by policy and the reason it gave (prefix-hit, least-loaded, session, ...).",
            ["policy", "reason"],
            registry=self.registry,
        )
        self.health_events = Counter(
            "phalanx_router_health_events",
            "Endpoints ejected from or recovered into rotation, by source (passive: failed requests; "
            "active: health checks).",
            ["endpoint", "event", "source"],
            registry=self.registry,
        )
        self.scrape_errors = Counter(
            "phalanx_router_engine_metrics_scrape_errors",
            "Failed reads of an endpoint's /metrics (waiting, running, KV usage).",
            ["endpoint"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "phalanx_router_queue_depth",
            "Requests waiting for an endpoint slot, by priority class.",
            ["priority"],
            registry=self.registry,
        )
        self.retries = Counter(
            "phalanx_router_retries",
            "Attempts abandoned before the first byte (so retryable), by endpoint and reason.",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.stream_failures = Counter(
            "phalanx_router_stream_failures",
            "Responses cut short because the endpoint failed after the first byte was relayed.",
            ["endpoint"],
            registry=self.registry,
        )
        self.no_endpoint = Counter(
            "phalanx_router_no_endpoint_rejections",
            "Requests answered 503 because no endpoint could take them.",
            ["model"],
            registry=self.registry,
        )
        # Demand, readable with no group running (docs/router.md, "The router at zero").
        self.arrivals = Counter(
            "phalanx_router_arrivals",
            "Requests for a served or declared model, counted when they arrive (before any queueing).",
            ["model"],
            registry=self.registry,
        )
        self.arrival_prompt_tokens = Counter(
            "phalanx_router_arrival_prompt_tokens",
            "Prompt tokens (the router's estimate) of the requests counted in phalanx_router_arrivals.",
            ["model"],
            registry=self.registry,
        )
        self.held = Gauge(
            "phalanx_router_held_requests",
            "Requests waiting in the queue for a declared model that no endpoint can serve yet.",
            ["model"],
            registry=self.registry,
        )

        # Prefill/decode disaggregation (docs/router.md).
        self.pd_requests = Counter(
            "phalanx_router_pd_requests",
            "Requests for disaggregated models, by how they were served: disaggregated (prefill then "
            "decode), decode_only (prefill skipped or failed) or aggregated (an engine without a PD role).",
            ["model", "mode"],
            registry=self.registry,
        )
        self.pd_phase = Histogram(
            "phalanx_router_pd_phase_seconds",
            "Time per phase of a disaggregated request: prefill (request to prefill's answer; SGLang: "
            "runs beside decode), decode_first_byte (decode request to its first byte: the KV "
            "transfer or bootstrap wait plus the first token).",
            ["model", "phase"],
            buckets=_TTFB_BUCKETS,
            registry=self.registry,
        )
        self.pd_ttft = Histogram(
            "phalanx_router_pd_time_to_first_token_seconds",
            "True TTFT of requests for disaggregated models: from the router's receipt of the request "
            "to the first byte of the decode engine's answer relayed to the client, prefill included.",
            ["model", "mode"],
            buckets=_TTFB_BUCKETS,
            registry=self.registry,
        )
        self.pd_fallbacks = Counter(
            "phalanx_router_pd_fallbacks",
            "Disaggregated requests whose prefill failed and that were served decode-only, by reason "
            "(prefill-error, prefill-timeout, prefill-unreachable, no-kv-transfer-params, kv-load-failed).",
            ["reason"],
            registry=self.registry,
        )
        self.pd_prefill_failures = Counter(
            "phalanx_router_pd_prefill_failures",
            "Prefill steps that failed, by protocol and reason (as pd_fallbacks). vLLM requests then "
            "fall back to decode-only; SGLang ones, whose decode engine cannot compute a prompt, are "
            "retried on another pair while nothing reached the client.",
            ["protocol", "reason"],
            registry=self.registry,
        )
        self.pd_prefill_skipped = Counter(
            "phalanx_router_pd_prefill_skipped",
            "Requests sent to a decode engine without prefill, by reason (short-prompt, "
            "cached-on-decode, no-pairable-prefill, prefill-saturated, prefill-backlog).",
            ["reason"],
            registry=self.registry,
        )

        self.key_usage = KeyUsage(self.registry)

    def child(self, metric: _M, *values: str) -> _M:
        """`metric.labels(*values)`, remembered: `labels` validates and locks on every call, a cost
        per request on the router's hot path (bench/router/results.md, issue 18)."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def counter(self, metric: Counter, *values: str) -> PendingCounter:
        """The series `metric.labels(*values)`, updated at the next read (`Pending`)."""
        return self.pending.counter(metric, values)

    def gauge(self, metric: Gauge, *values: str) -> PendingGauge:
        return self.pending.gauge(metric, values)

    def histogram(self, metric: Histogram, *values: str) -> PendingHistogram:
        return self.pending.histogram(metric, values)

    def relay_series(
        self, model: str, endpoint: str
    ) -> tuple[PendingHistogram, PendingHistogram, PendingHistogram]:
        """The TTFB, TTFT and ITL series a relay to `endpoint` observes: one lookup per relay."""
        key = (model, endpoint)
        found = self._relay_series.get(key)
        if found is None:
            found = self._relay_series[key] = (
                self.histogram(self.ttfb, model),
                self.histogram(self.ttft, model, endpoint),
                self.histogram(self.itl, model, endpoint),
            )
        return found

    def know_endpoint(self, name: str) -> None:
        """Start the endpoint's ejection counters at 0: `increase()` cannot count a series' first
        sample, so a counter born at its first ejection made a crash-loop alert wait one more."""
        for source in ("passive", "active"):
            self.child(self.health_events, name, "ejected", source)

    def forget_endpoint(self, name: str) -> None:
        """Drop the gauge series of an endpoint that is gone and idle."""
        self._children.pop((self.in_flight, (name,)), None)
        self.pending.forget(self.in_flight, (name,))
        with contextlib.suppress(KeyError):
            self.in_flight.remove(name)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class KeyUsage:
    """Requests and the engine's token counts per API key, labelled with the key's name (never the
    key). The labelled children are made once per key and kept: a request costs dict lookups."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._pending = Pending(registry)
        self.requests = Counter(
            "phalanx_router_key_requests",
            "Requests answered, by API key name (_unauthenticated: no valid key, or keys off; _other: "
            "keys past the label cap) and status class (2xx, 4xx, 5xx).",
            ["key", "code_class"],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "phalanx_router_key_prompt_tokens",
            "Prompt tokens by API key name, as the engine counted them (answers that report usage).",
            ["key"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "phalanx_router_key_completion_tokens",
            "Generated tokens by API key name, as the engine counted them (answers that report usage; "
            "streams only with stream_options.include_usage).",
            ["key"],
            registry=registry,
        )
        self._labels: dict[str | None, str] = {None: UNAUTHENTICATED}
        self._requests: dict[tuple[str, int], PendingCounter] = {}
        self._tokens: dict[str, tuple[PendingCounter, PendingCounter]] = {}

    def label(self, key: str | None) -> str:
        found = self._labels.get(key)
        if found is not None:
            return found
        if len(self._labels) > KEY_LABELS_MAX:
            return OTHER_KEYS  # not remembered: the map stays bounded too
        found = self._labels[key] = key or UNAUTHENTICATED
        return found

    def record(self, key: str | None, code: int, usage: Usage | None) -> None:
        """One answered request of `key` (None: no valid key); `usage` when the engine counted it."""
        label = self.label(key)
        group = code // 100
        child = self._requests.get((label, group))
        if child is None:
            child = self._requests[(label, group)] = self._pending.counter(
                self.requests, (label, f"{group}xx")
            )
        child.inc()
        if usage is None:
            return
        tokens = self._tokens.get(label)
        if tokens is None:
            tokens = self._tokens[label] = (
                self._pending.counter(self.prompt_tokens, (label,)),
                self._pending.counter(self.completion_tokens, (label,)),
            )
        tokens[0].inc(usage.prompt_tokens)
        tokens[1].inc(usage.completion_tokens)


class RelayTimer:
    """Times what one relay writes: first byte (TTFB), and for event streams the first event (TTFT)
    and the gaps between events (ITL, spread evenly over the events one write carries)."""

    __slots__ = ("_itl", "_last", "_started", "_ttfb", "_ttft")

    def __init__(self, metrics: RouterMetrics, model: str, endpoint: str, started: float) -> None:
        self._ttfb, self._ttft, self._itl = metrics.relay_series(model, endpoint)
        self._started = started
        self._last: float | None = None

    def __call__(self, data: bytes, event_stream: bool) -> None:
        now = time.monotonic()
        if self._last is None:
            self._ttfb.observe(now - self._started)
            if event_stream:
                self._ttft.observe(now - self._started)
        elif event_stream:
            events = max(data.count(b"\n\n"), data.count(b"\r\n\r\n"), 1)
            gap = (now - self._last) / events
            for _ in range(min(events, 64)):
                self._itl.observe(gap)
        self._last = now
