"""`LoadScraper` against real `phalanx sim` processes under load, and against small in-process backends
for the failures a simulator does not produce (error answers, compressed or oversized pages)."""

from __future__ import annotations

import asyncio
import gzip
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import choose_encoder

from phalanx.router.backends import BackendLoad, LoadScraper, ScrapeEvent
from phalanx.router.endpoints import Endpoint
from tests.component.sim.conftest import HOST, SimProcess, start_sim, wait_health

from .fakes import eventually

__all__ = ["start_sim"]  # the fixture, used by name

pytestmark = pytest.mark.component


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # Like the router's own session: bodies are not decompressed.
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        yield s


def endpoint(name: str, url: str, **kw: bool) -> Endpoint:
    return Endpoint(name=name, url=url, serving="s", group_index=0, models=("tiny",), **kw)


def sim_endpoint(name: str, sim: SimProcess) -> Endpoint:
    return endpoint(name, sim.base_url)


@dataclass
class Backend:
    """An in-process backend whose `/metrics` and `/health` answers a test sets."""

    waiting: float = 0.0
    status: int = 200
    gzip_always: bool = False
    pad_bytes: int = 0
    health_delay_s: float = 0.0
    health_status: int = 200
    hold: asyncio.Event | None = None
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    health_checks: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self.seen_headers.append(dict(request.headers))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.status != 200:
                return web.Response(status=self.status, text="broken")
            reg = CollectorRegistry()
            Gauge("vllm:num_requests_waiting", "w", ["engine"], registry=reg).labels("0").set(self.waiting)
            # Answer the way vLLM's prometheus_client endpoint does, by content negotiation.
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            body = encoder(reg) + b"#" * self.pad_bytes
            headers = {"Content-Type": content_type}
            if self.gzip_always:
                body = gzip.compress(body)
                headers["Content-Encoding"] = "gzip"
            return web.Response(body=body, headers=headers)
        finally:
            self.active -= 1

    async def _health(self, request: web.Request) -> web.Response:
        self.health_checks += 1
        if self.health_delay_s:
            await asyncio.sleep(self.health_delay_s)
        return web.Response(status=self.health_status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


Make = Callable[..., Awaitable[Backend]]


@pytest.fixture
async def backends() -> AsyncIterator[Make]:
    """`await backends(**fields)` starts one; every backend it started is stopped at the end."""
    made: list[Backend] = []

    async def make(**kw: Any) -> Backend:
        b = Backend(**kw)
        made.append(b)
        await b.start()
        return b

    try:
        yield make
    finally:
        for b in made:
            await b.stop()


@asynccontextmanager
async def scraping(session: aiohttp.ClientSession, **kw: Any) -> AsyncIterator[LoadScraper]:
    scraper = LoadScraper(session, **kw)
    try:
        yield scraper
    finally:
        await scraper.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def post_completion(session: aiohttp.ClientSession, sim: SimProcess, max_tokens: int) -> None:
    body = {"model": "tiny", "prompt": "a long story please", "max_tokens": max_tokens}
    async with session.post(f"{sim.base_url}/v1/completions", json=body) as resp:
        await resp.read()


# -- against the simulator ------------------------------------------------------------------------


async def test_reads_the_simulators_queue_batch_and_kv_under_load_then_goes_stale(
    start_sim: Callable[..., SimProcess], session: aiohttp.ClientSession
) -> None:
    # Two sequences at a time, slow decoding: the rest of the requests queue.
    sim = start_sim("--max-num-seqs", "2", "--inter-token-latency", "0.05", "--num-gpu-blocks", "64")
    wait_health(sim.port, 200)
    events: list[ScrapeEvent] = []
    ep = sim_endpoint("sim-0", sim)
    load: list[BackendLoad | None] = [None]
    calls: list[asyncio.Task[None]] = []
    async with scraping(
        session, interval_s=0.05, timeout_s=1.0, stale_after_s=0.5, on_scrape=events.append
    ) as (scraper):

        def reading() -> BackendLoad | None:
            load[0] = scraper.snapshot(time.monotonic())["sim-0"]
            return load[0]

        try:
            scraper.update([ep])
            await eventually(lambda: reading() == BackendLoad(0.0, 0.0, 0.0), timeout_s=5)
            calls = [asyncio.create_task(post_completion(session, sim, 400)) for _ in range(5)]
            await eventually(
                lambda: (r := reading()) is not None and (r.running, r.waiting) == (2.0, 3.0), 10
            )
            assert load[0] is not None and load[0].kv_cache_usage is not None
            assert 0 < load[0].kv_cache_usage <= 1
        finally:
            # The clients go away: the simulator aborts their requests and the gauges fall back.
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        await eventually(lambda: reading() == BackendLoad(0.0, 0.0, 0.0), timeout_s=5)
        assert all(e.error is None for e in events)

        sim.proc.kill()
        sim.proc.wait(timeout=10)
        killed_at = time.monotonic()
        await eventually(lambda: reading() is None, timeout_s=5)
        # Not before the reading was stale: the last good one is kept for stale_after_s.
        assert time.monotonic() - killed_at >= 0.5 - 0.05 - 0.05
        failed = [e for e in events if e.error is not None]
        assert failed and failed[-1].error == "ClientConnectorError"
        assert scraper.errors == len(failed) and scraper.scrapes == len(events)


async def test_a_restarted_simulator_is_read_again(
    start_sim: Callable[..., SimProcess], session: aiohttp.ClientSession
) -> None:
    sim = start_sim()
    wait_health(sim.port, 200)
    async with scraping(session, interval_s=0.05, stale_after_s=0.3) as scraper:
        scraper.update([sim_endpoint("sim-0", sim)])
        await eventually(lambda: scraper.snapshot(time.monotonic())["sim-0"] is not None, timeout_s=5)
        sim.proc.kill()
        sim.proc.wait(timeout=10)
        await eventually(lambda: scraper.snapshot(time.monotonic())["sim-0"] is None, timeout_s=5)
        again = start_sim(port=sim.port, join_port=sim.join_port)
        wait_health(again.port, 200)
        await eventually(lambda: scraper.snapshot(time.monotonic())["sim-0"] == BackendLoad(0.0, 0.0, 0.0), 5)


# -- against in-process backends ---------------------------------------------------------------


async def test_asks_for_the_classic_text_format_unencoded(
    backends: Make, session: aiohttp.ClientSession
) -> None:
    b = await backends(waiting=4)
    async with scraping(session, interval_s=0.05) as scraper:
        scraper.update([endpoint("b", b.url)])
        # prometheus_client's OpenMetrics writer would turn the sample name into vllm_num_...
        await eventually(lambda: scraper.snapshot(time.monotonic())["b"] == BackendLoad(waiting=4.0))
        assert b.seen_headers[0]["Accept-Encoding"] == "identity"
        assert b.seen_headers[0]["Accept"] == "text/plain"


async def test_failures_keep_the_last_reading_until_it_is_stale(
    backends: Make, session: aiohttp.ClientSession
) -> None:
    b = await backends(waiting=2)
    clock = FakeClock()
    events: list[ScrapeEvent] = []
    async with scraping(
        session, interval_s=0.02, stale_after_s=3.0, clock=clock, on_scrape=events.append
    ) as scraper:
        scraper.update([endpoint("b", b.url)])
        assert scraper.snapshot(0.0) == {"b": None}  # never read yet
        await eventually(lambda: scraper.snapshot(0.0)["b"] == BackendLoad(waiting=2.0))
        # Scrapes of one endpoint never overlap: once one failed, no good one is still out.
        b.status = 500
        await eventually(lambda: any(e.error == "http_500" for e in events))
        clock.now = 1.0
        # The last good reading was taken at 0: usable up to 3.0, not after.
        assert scraper.snapshot(3.0)["b"] == BackendLoad(waiting=2.0)
        assert scraper.snapshot(3.01)["b"] is None
        b.status, b.waiting = 200, 7
        clock.now = 10.0
        await eventually(lambda: scraper.snapshot(10.0)["b"] == BackendLoad(waiting=7.0))


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("gzip", "ValueError"),
        ("oversized", "ValueError"),
        ("slow", "timeout"),
        ("refused", "ClientConnectorError"),
    ],
)
async def test_a_bad_answer_is_an_error_not_a_reading(
    backends: Make, session: aiohttp.ClientSession, kind: str, error: str
) -> None:
    b = await backends(
        waiting=1, gzip_always=kind == "gzip", pad_bytes=4096 if kind == "oversized" else 0,
        hold=asyncio.Event() if kind == "slow" else None,
    )  # fmt: skip
    url = b.url
    if kind == "refused":
        await b.stop()
    events: list[ScrapeEvent] = []
    limits = {"timeout_s": 0.2, "max_page_bytes": 1024}
    async with scraping(session, interval_s=0.05, on_scrape=events.append, **limits) as scraper:
        scraper.update([endpoint("b", url)])
        await eventually(lambda: len(events) >= 2)
        assert {e.error for e in events} == {error}
        assert scraper.snapshot(time.monotonic()) == {"b": None}
        assert scraper.errors == scraper.scrapes == len(events)


async def test_the_set_follows_update(backends: Make, session: aiohttp.ClientSession) -> None:
    a, b, c = [await backends(waiting=w) for w in (1, 2, 3)]
    async with scraping(session, interval_s=0.02, stale_after_s=60) as scraper:
        scraper.update([endpoint("a", a.url), endpoint("b", b.url), endpoint("c", c.url, ready=False)])
        await eventually(lambda: all(v is not None for v in scraper.snapshot(time.monotonic()).values()))
        # Not ready: not scraped, not reported.
        assert set(scraper.snapshot(time.monotonic())) == {"a", "b"} and not c.seen_headers
        # b leaves; a is now served at c's address: its old reading is dropped at once.
        scraper.update([endpoint("a", c.url)])
        assert scraper.snapshot(time.monotonic()) == {"a": None}
        await eventually(lambda: scraper.snapshot(time.monotonic()) == {"a": BackendLoad(waiting=3.0)})
        scraped_b = len(b.seen_headers)
        await asyncio.sleep(0.1)
        assert len(b.seen_headers) == scraped_b
        # Unchanged sets cost nothing and restart nothing.
        before = len(c.seen_headers)
        for _ in range(50):
            scraper.update([endpoint("a", c.url)])
        assert scraper.snapshot(time.monotonic()) == {"a": BackendLoad(waiting=3.0)}
        await asyncio.sleep(0.05)
        assert len(c.seen_headers) - before <= 4
    # Closed: no task of the scraper is left, and later updates do nothing.
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("poll ")]
    scraper.update([endpoint("a", a.url)])
    assert scraper.snapshot(time.monotonic()) == {}


async def test_concurrency_is_bounded(backends: Make, session: aiohttp.ClientSession) -> None:
    hold = asyncio.Event()
    fleet = [await backends(hold=hold) for _ in range(6)]
    async with scraping(session, interval_s=0.05, timeout_s=5.0, max_concurrency=2) as scraper:
        scraper.update([endpoint(f"e{i}", b.url) for i, b in enumerate(fleet)])
        await eventually(lambda: sum(b.active for b in fleet) == 2)
        await asyncio.sleep(0.2)
        assert sum(b.active for b in fleet) == 2
        hold.set()
        await eventually(lambda: all(scraper.snapshot(time.monotonic()).values()))


async def test_a_broken_hook_does_not_stop_scraping(backends: Make, session: aiohttp.ClientSession) -> None:
    b = await backends(waiting=1)
    calls = []

    def hook(event: ScrapeEvent) -> None:
        calls.append(event)
        raise RuntimeError("metrics down")

    async with scraping(session, interval_s=0.02, on_scrape=hook) as scraper:
        scraper.update([endpoint("b", b.url)])
        await eventually(lambda: len(calls) >= 3)
        assert scraper.snapshot(time.monotonic())["b"] == BackendLoad(waiting=1.0)


async def test_intervals_must_be_positive(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError):
        LoadScraper(session, interval_s=0)
    with pytest.raises(ValueError):
        LoadScraper(session, stale_after_s=0)
    assert math.isclose(LoadScraper(session, interval_s=0.5).stale_after_s, 1.5)
