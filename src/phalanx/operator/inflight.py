"""The operator's in-flight source: the engines' own request gauges, read from draining entry pods.

Only the entry pods of draining groups and role instances are scraped, so the work is bounded by
the drains under way. After each reconcile the operator says which entry pods of a ModelServing
drain (`track`); a background task scrapes them concurrently, with a short timeout, and keeps the
last count of each. The Reconciler's synchronous in-flight callable reads that cache: a pod not
read successfully within `fresh_s` has no count, which the controller core treats as unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from phalanx.kube.resources import BY_KIND, as_dict
from phalanx.operator.engine_gauges import metrics_url, requests_in_flight

log = logging.getLogger("phalanx.operator.inflight")

Object = dict[str, Any]
PodKey = tuple[str, str]  # (namespace, pod name)
# Reads a pod by (namespace, name); None when it is gone. Errors count as unknown.
FetchPod = Callable[[str, str], Awaitable[Object | None]]

MAX_PAGE_BYTES = 8 * 1024 * 1024  # a real engine's page is ~100 KB


@dataclass(frozen=True)
class _Count:
    requests: int
    at: float


class EngineInFlight:
    """Callable as the Reconciler's `in_flight(namespace)`; `run` is its background task."""

    def __init__(
        self,
        fetch_pod: FetchPod,
        *,
        interval_s: float = 0.5,
        timeout_s: float = 1.0,
        fresh_s: float = 2.0,
        max_concurrency: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetch_pod = fetch_pod
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.fresh_s = fresh_s
        self.clock = clock
        self._gate = asyncio.Semaphore(max_concurrency)
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
            requests: int | None = None
            try:
                url = self._urls.get(key) or await self._address(key)
                if url is not None:
                    requests = await asyncio.wait_for(self._read(session, url), self.timeout_s)
            except Exception as exc:  # one pod's failure (its API read or its page) is its unknown only
                log.debug("reading the in-flight requests of %s/%s failed: %r", *key, exc)
            if key not in self.targets():
                return  # stopped draining while the request was out
            if requests is None:
                self._counts.pop(key, None)  # a failed read is unknown, never 0
            else:
                self._counts[key] = _Count(requests, self.clock())

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
