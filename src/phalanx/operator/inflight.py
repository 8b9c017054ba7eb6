"""The operator's in-flight source: the engines' own request gauges, read from draining entry pods.

Only the entry pods of draining groups and role instances are scraped, so the work is bounded by
the drains under way. After each reconcile the operator says which entry pods of a ModelServing
drain (`track`); a background task scrapes them concurrently, with a short timeout, and keeps the
last count of each. The Reconciler's synchronous in-flight callable reads that cache: a pod not
read successfully within `fresh_s` has no count, which the controller core treats as unknown.
Every read is counted by outcome and timed (`ReadMetrics`), so an operator whose drains all wait
their full bound shows why: pages refused, timing out or not an engine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from phalanx.kube.resources import BY_KIND, as_dict
from phalanx.operator.engine_gauges import metrics_url, requests_in_flight

log = logging.getLogger("phalanx.operator.inflight")

Object = dict[str, Any]
PodKey = tuple[str, str]  # (namespace, pod name)
# Reads a pod by (namespace, name); None when it is gone. Errors count as unknown.
FetchPod = Callable[[str, str], Awaitable[Object | None]]

MAX_PAGE_BYTES = 8 * 1024 * 1024  # a real engine's page is ~100 KB

# How one read of a draining entry pod ended (the `outcome` label of the reads counter).
OK = "ok"  # a count
TIMEOUT = "timeout"  # no whole page within the timeout
REFUSED = "refused"  # no connection: refused, unreachable
BAD_PAGE = "bad_page"  # an HTTP error status, a page over the size cap, or no engine gauges on it
ERROR = "error"  # the connection broke mid-read, or anything else
NO_ADDRESS = "no_address"  # the pod is gone or has no IP: nothing to read
POD_UNREADABLE = "pod_unreadable"  # reading the pod from the API server failed
OUTCOMES = (OK, TIMEOUT, REFUSED, BAD_PAGE, ERROR, NO_ADDRESS, POD_UNREADABLE)


def read_outcome(error: BaseException | None, requests: int | None) -> str:
    """The outcome of one page read that ended with `error`, or returned `requests` (None: no gauges)."""
    if error is None:
        return OK if requests is not None else BAD_PAGE
    if isinstance(error, TimeoutError):  # aiohttp's own timeouts are TimeoutErrors too
        return TIMEOUT
    if isinstance(error, aiohttp.ClientConnectorError):
        return REFUSED
    if isinstance(error, aiohttp.ClientResponseError | ValueError):
        return BAD_PAGE
    return ERROR


@dataclass(frozen=True)
class ReadSettings:
    """How the draining entry pods are read: the operator's `--inflight-read-interval`,
    `--inflight-read-timeout` and `--inflight-read-concurrency`."""

    interval_s: float = 0.5
    timeout_s: float = 1.0
    max_concurrency: int = 32

    @property
    def fresh_s(self) -> float:
        """How long a count is used: one read may be missed (0.5 s late) before it is unknown."""
        return self.interval_s + self.timeout_s + 0.5


MAX_INTERVAL_S = 60.0  # drain bounds are tens of seconds: a slower read would never end one early
MAX_TIMEOUT_S = 30.0
MAX_CONCURRENCY = 1024


def read_settings_problems(settings: ReadSettings) -> list[str]:
    """Every problem with `settings`, each naming the option, the bad value and what to give instead."""
    default = ReadSettings()
    problems: list[str] = []
    for option, value, most, usual in (
        ("--inflight-read-interval", settings.interval_s, MAX_INTERVAL_S, default.interval_s),
        ("--inflight-read-timeout", settings.timeout_s, MAX_TIMEOUT_S, default.timeout_s),
    ):
        if not (math.isfinite(value) and 0 < value <= most):
            problems.append(
                f"{option} {value:g}: give seconds above 0 and at most {most:g} (default {usual:g})"
            )
    if not 1 <= settings.max_concurrency <= MAX_CONCURRENCY:
        problems.append(
            f"--inflight-read-concurrency {settings.max_concurrency}: give a whole number from 1 to "
            f"{MAX_CONCURRENCY} (default {default.max_concurrency})"
        )
    return problems


class ReadMetrics:
    """The reads' Prometheus metrics, on the operator's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reads = Counter(
            "phalanx_operator_inflight_reads",
            "Reads of a draining entry pod's engine /metrics, by outcome (ok, timeout, refused, "
            "bad_page, error, no_address, pod_unreadable).",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.reads.labels(outcome)  # every outcome is exported from the start, at 0
        self.seconds = Histogram(
            "phalanx_operator_inflight_read_duration_seconds",
            "Time of one read of an engine's /metrics page, whatever its outcome.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.draining = Gauge(
            "phalanx_operator_draining_entry_pods",
            "Entry pods of draining groups and role instances whose engines are read.",
            registry=registry,
        )
        self.unknown = Gauge(
            "phalanx_operator_draining_entry_pods_unknown",
            "Draining entry pods with no fresh in-flight count: their drains wait up to the bound.",
            registry=registry,
        )


@dataclass(frozen=True)
class _Count:
    requests: int
    at: float


class EngineInFlight:
    """Callable as the Reconciler's `in_flight(namespace)`; `run` is its background task."""

    def __init__(
        self,
        fetch_pod: FetchPod,
        settings: ReadSettings = ReadSettings(),
        *,
        metrics: ReadMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch_pod = fetch_pod
        self.interval_s = settings.interval_s
        self.timeout_s = settings.timeout_s
        self.fresh_s = settings.fresh_s
        self.clock = clock
        self.metrics = metrics
        if metrics is not None:
            metrics.draining.set_function(lambda: len(self.targets()))
            metrics.unknown.set_function(self.unknown)
        self._gate = asyncio.Semaphore(settings.max_concurrency)
        self._draining: dict[PodKey, frozenset[str]] = {}  # (namespace, ModelServing) -> entry pods
        self._urls: dict[PodKey, str] = {}  # a pod's address does not change while it lives
        self._counts: dict[PodKey, _Count] = {}
        self._wake = asyncio.Event()

    def track(self, namespace: str, serving: str, pods: Iterable[str]) -> None:
        """The entry pods of one ModelServing that drain now (level-triggered: replaces the last set)."""
        pods = frozenset(pods)
        if pods:
            added = pods - self._draining.get((namespace, serving), frozenset())
            self._draining[(namespace, serving)] = pods
            if added:
                self._wake.set()
        else:
            self._draining.pop((namespace, serving), None)
        wanted = self.targets()
        for stale in [k for k in self._urls if k not in wanted]:
            del self._urls[stale]
        for stale in [k for k in self._counts if k not in wanted]:
            del self._counts[stale]

    def targets(self) -> set[PodKey]:
        return {(ns, pod) for (ns, _), pods in self._draining.items() for pod in pods}

    def __call__(self, namespace: str) -> dict[str, int]:
        oldest = self.clock() - self.fresh_s
        return {
            pod: count.requests
            for (ns, pod), count in self._counts.items()
            if ns == namespace and count.at >= oldest
        }

    def unknown(self) -> int:
        """Draining entry pods with no fresh count now."""
        oldest = self.clock() - self.fresh_s
        return sum(1 for key in self.targets() if (c := self._counts.get(key)) is None or c.at < oldest)

    async def run(self) -> None:
        """Scrapes the tracked pods every `interval_s` (at once when a pod starts draining)."""
        async with aiohttp.ClientSession() as session:
            while True:
                self._wake.clear()  # before the reads: a pod tracked meanwhile is read at once after
                await self.scrape_once(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s if self._draining else None)

    async def scrape_once(self, session: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self._scrape(session, key) for key in sorted(self.targets())))

    async def _scrape(self, session: aiohttp.ClientSession, key: PodKey) -> None:
        async with self._gate:
            requests, outcome = await self._read_pod(session, key)
            if self.metrics is not None:
                self.metrics.reads.labels(outcome).inc()
            if key not in self.targets():
                return  # stopped draining while the request was out
            if requests is None:
                self._counts.pop(key, None)  # a failed read is unknown, never 0
            else:
                self._counts[key] = _Count(requests, self.clock())

    async def _read_pod(self, session: aiohttp.ClientSession, key: PodKey) -> tuple[int | None, str]:
        """One pod's count (None: unknown) and the read's outcome; one pod's failure is its own only."""
        try:
            url = self._urls.get(key) or await self._address(key)
        except Exception as exc:
            log.debug("reading the pod %s/%s failed: %r", *key, exc)
            return None, POD_UNREADABLE
        if url is None:
            return None, NO_ADDRESS
        requests: int | None = None
        error: Exception | None = None
        started = time.perf_counter()
        try:
            requests = await asyncio.wait_for(self._read(session, url), self.timeout_s)
        except Exception as exc:
            error = exc
            log.debug("reading the in-flight requests of %s/%s failed: %r", *key, exc)
        if self.metrics is not None:
            self.metrics.seconds.observe(time.perf_counter() - started)
        return requests, read_outcome(error, requests)

    async def _address(self, key: PodKey) -> str | None:
        pod = await self.fetch_pod(*key)
        url = metrics_url(pod) if pod is not None else None
        if url is not None and key in self.targets():
            self._urls[key] = url
        return url

    @staticmethod
    async def _read(session: aiohttp.ClientSession, url: str) -> int | None:
        headers = {"Accept": "text/plain", "Accept-Encoding": "identity"}
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            resp.raise_for_status()
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise ValueError(f"/metrics page over {MAX_PAGE_BYTES} bytes")
        return requests_in_flight(body.decode("utf-8", errors="replace"))


def pod_reader(client: AsyncClient) -> FetchPod:
    """Reads pods from the API server (one GET per draining entry pod: its address is kept)."""

    async def read(namespace: str, name: str) -> Object | None:
        try:
            return as_dict(await client.get(BY_KIND["Pod"], name, namespace=namespace))
        except ApiError as exc:
            if getattr(exc.status, "code", 0) == 404:
                return None
            raise

    return read
