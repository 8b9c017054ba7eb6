"""The operator's in-flight source against real HTTP servers on loopback (and a real `phalanx sim`)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from phalanx.api import labels as L
from phalanx.operator.engine_gauges import metrics_url, requests_in_flight
from phalanx.operator.inflight import EngineInFlight, ReadSettings
from tests.component.sim.conftest import HOST, SimProcess, start_sim, wait_health

__all__ = ["start_sim"]  # the fixture, used by name below

VLLM_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="a"} 2.0
vllm:num_requests_running{model_name="b"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="a"} 4.0
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{reason="capacity"} 50.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc 0.5
"""

SGLANG_PAGE = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{tp_rank="0"} 3.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{tp_rank="0"} 2.0
"""


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (VLLM_PAGE, 7),  # running + waiting over every model; longer names are other gauges
        (SGLANG_PAGE, 5),
        ("vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n", 0),
        ("vllm:num_requests_running 1\n", 1),  # one of the pair is enough
        ("vllm:num_requests_running NaN\nvllm:num_requests_waiting 2\n", 2),
        ("vllm:num_requests_running NaN\n", None),
        ("vllm:num_requests_running -3\n", 0),
        ("# HELP vllm:num_requests_running only help\n", None),
        ("process_cpu_seconds_total 12.5\n", None),  # a page, but not an engine's
        ("", None),
        ("<html><body>502 Bad Gateway</body></html>", None),
        ("vllm:num_requests_running three\n", None),
        ('vllm:num_requests_running{model_name="a} 1\n', None),
        ("\x00\xff{{{ }}}", None),
    ],
)
def test_requests_in_flight(page: str, expected: int | None) -> None:
    assert requests_in_flight(page) == expected


def entry_pod(ip: str, ports: list[dict[str, Any]] | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "engine", "image": "vllm"}
    if ports is not None:
        container["ports"] = ports
    spec = {"containers": [container]}
    metadata = {"name": "m-0-decode-0-0", "labels": {L.ENTRY: "true"}}
    return {"metadata": metadata, "spec": spec, "status": {"podIP": ip}}


@pytest.mark.parametrize(
    ("pod", "url"),
    [
        (entry_pod("10.1.2.3", [{"name": "m", "containerPort": 9090}, {"name": "http", "containerPort": 80}]),
         "http://10.1.2.3:80/metrics"),
        (entry_pod("10.1.2.3", [{"containerPort": 30000}]), "http://10.1.2.3:30000/metrics"),
        (entry_pod("10.1.2.3", None), "http://10.1.2.3:8000/metrics"),
        (entry_pod("fd00::7", None), "http://[fd00::7]:8000/metrics"),
        (entry_pod("", None), None),
        ({"metadata": {"name": "p"}}, None),
        ({**entry_pod("10.1.2.3", None), "metadata": {"name": "a-worker"}}, None),
    ],
)  # fmt: skip
def test_metrics_url(pod: dict[str, Any], url: str | None) -> None:
    assert metrics_url(pod) == url


# ---- the source, against servers on loopback ---------------------------------------------------


class Engine:
    """A `/metrics` endpoint whose behaviour a test sets: a count, garbage, an error or a hang."""

    def __init__(self) -> None:
        self.running = 0
        self.mode = "ok"
        self.hits = 0

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "cut":  # the connection closes halfway through the promised page
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b"vllm:num_requests_running 1\n")
            assert request.transport is not None
            request.transport.close()
            return response
        if self.mode == "garbage":
            return web.Response(text="<html>oops</html>")
        if self.mode == "error":
            return web.Response(status=500, text="vllm:num_requests_running 0\n")
        return web.Response(text=f"vllm:num_requests_running {self.running}\nvllm:num_requests_waiting 0\n")


@contextlib.asynccontextmanager
async def serving(engine: Engine) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/metrics", engine.metrics)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        await runner.cleanup()


def pods_at(port: int) -> Callable[[str, str], Awaitable[dict[str, Any] | None]]:
    async def fetch(_namespace: str, _name: str) -> dict[str, Any] | None:
        return entry_pod(HOST, [{"name": "http", "containerPort": port}])

    return fetch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_count_is_read_and_ages_out() -> None:
    engine, clock = Engine(), Clock()
    async with serving(engine) as port, aiohttp.ClientSession() as session:
        source = EngineInFlight(pods_at(port), clock=clock)  # counts last 2 s
        assert source("ns") == {}
        source.track("ns", "m", {"m-0-decode-0-0"})
        engine.running = 3
        await source.scrape_once(session)
        assert source("ns") == {"m-0-decode-0-0": 3}
        assert source("other-namespace") == {}
        engine.running = 0
        await source.scrape_once(session)
        assert source("ns") == {"m-0-decode-0-0": 0}
        clock.now += 2.5  # no read since: too old to trust
        assert source("ns") == {}


@pytest.mark.parametrize("mode", ["hang", "garbage", "error"])
async def test_a_failed_read_is_unknown_at_once(mode: str) -> None:
    engine = Engine()
    async with serving(engine) as port, aiohttp.ClientSession() as session:
        source = EngineInFlight(pods_at(port), ReadSettings(timeout_s=0.2))
        source.track("ns", "m", {"m-0-decode-0-0"})
        await source.scrape_once(session)
        assert source("ns") == {"m-0-decode-0-0": 0}
        engine.mode = mode
        started = asyncio.get_running_loop().time()
        await source.scrape_once(session)
        assert source("ns") == {}  # not the 0 read before
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_refused_connection_is_unknown() -> None:
    engine = Engine()
    async with serving(engine) as port:
        pass  # the port is closed again
    async with aiohttp.ClientSession() as session:
        source = EngineInFlight(pods_at(port), ReadSettings(timeout_s=0.5))
        source.track("ns", "m", {"m-0-decode-0-0"})
        await source.scrape_once(session)
        assert source("ns") == {}


async def test_a_pod_that_cannot_be_read_or_has_no_address_is_unknown() -> None:
    async def gone(_namespace: str, _name: str) -> dict[str, Any] | None:
        return None

    async def broken(_namespace: str, _name: str) -> dict[str, Any] | None:
        raise ConnectionResetError("API server went away")

    async def no_address(_namespace: str, _name: str) -> dict[str, Any] | None:
        return entry_pod("", None)

    async with aiohttp.ClientSession() as session:
        for fetch in (gone, broken, no_address):
            source = EngineInFlight(fetch)
            source.track("ns", "m", {"m-0-decode-0-0"})
            await source.scrape_once(session)
            assert source("ns") == {}


async def test_only_draining_pods_are_read_and_an_ended_drain_is_forgotten() -> None:
    engine = Engine()
    asked: list[str] = []
    async with serving(engine) as port, aiohttp.ClientSession() as session:
        inner = pods_at(port)

        async def fetch(namespace: str, name: str) -> dict[str, Any] | None:
            asked.append(name)
            return await inner(namespace, name)

        source = EngineInFlight(fetch)
        await source.scrape_once(session)
        assert engine.hits == 0  # nothing drains: nothing is read
        source.track("ns", "m", {"a", "b"})
        source.track("ns", "n", {"c"})
        await source.scrape_once(session)
        await source.scrape_once(session)
        assert engine.hits == 6
        assert sorted(asked) == ["a", "b", "c"]  # one GET per pod: its address is kept
        assert source("ns") == {"a": 0, "b": 0, "c": 0}
        source.track("ns", "m", {"b"})  # a is deleted, b still drains
        source.track("ns", "n", ())
        assert source("ns") == {"b": 0}
        await source.scrape_once(session)
        assert engine.hits == 7


async def test_the_background_task_reads_a_pod_as_soon_as_it_drains() -> None:
    engine = Engine()
    engine.running = 2
    async with serving(engine) as port:
        source = EngineInFlight(pods_at(port), ReadSettings(interval_s=30.0))
        task = asyncio.create_task(source.run())
        try:
            await asyncio.sleep(0.05)
            source.track("ns", "m", {"m-0-decode-0-0"})
            for _ in range(100):
                if source("ns"):
                    break
                await asyncio.sleep(0.02)
            assert source("ns") == {"m-0-decode-0-0": 2}  # well before the 30 s period
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def stream_slowly(sim: SimProcess) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(HOST, sim.port, timeout=10)
    body = {"model": "tiny", "prompt": "hello", "max_tokens": 200, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    response.readline()  # the first chunk: the request runs
    return conn


async def test_a_real_simulator_reports_its_running_request(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--inter-token-latency", "0.05", "--prefill-overhead", "0")
    await asyncio.to_thread(wait_health, sim.port, 200)
    async with aiohttp.ClientSession() as session:
        source = EngineInFlight(pods_at(sim.port))
        source.track("ns", "m", {"m-0-decode-0-0"})
        await source.scrape_once(session)
        assert source("ns") == {"m-0-decode-0-0": 0}
        conn = await asyncio.to_thread(stream_slowly, sim)
        try:
            await source.scrape_once(session)
            assert source("ns") == {"m-0-decode-0-0": 1}
        finally:
            conn.close()
        for _ in range(50):  # a client that hangs up aborts its request
            await source.scrape_once(session)
            if source("ns") == {"m-0-decode-0-0": 0}:
                break
            await asyncio.sleep(0.1)
        assert source("ns") == {"m-0-decode-0-0": 0}
