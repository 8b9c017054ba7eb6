"""How the router counts an answer whose client hangs up the moment it has it all: complete (its
status), not 499. A client on a raw loopback socket reads up to `[DONE]` (or the whole declared
body) and closes at once, while the router may still be ending the body or reading the engine's
tail; a hang-up before that stays 499 and still cancels the engine's request."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import aiohttp
import pytest

from phalanx.router import Router, RouterConfig
from phalanx.router.server import running
from tests.component.sim.conftest import SimProcess, start_sim, wait_health

from .fakes import FakeUpstream, HeldAfterDone, eventually, upstreams
from .test_pd_sglang import endpoints as sglang_endpoints
from .test_pd_sglang import start_pair
from .test_pd_vllm import LONG, metric, no_leak, pd_endpoint, pd_router, start_decode, start_prefill

__all__ = ["start_sim"]  # fixture, used by name

pytestmark = pytest.mark.component

ROUNDS = 20


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    config = RouterConfig(access_log=True, scrape_interval_s=None, health_check_interval_s=None)
    async with running(Router(config)) as r:
        yield r


async def ask(
    router: Router, body: dict[str, object], path: str = "/v1/chat/completions"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = router.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    writer.write(head.encode() + payload)
    await writer.drain()
    return reader, writer


async def hang_up(writer: asyncio.StreamWriter, reset: bool) -> None:
    if reset:
        writer.transport.abort()  # unread bytes in the socket: the kernel answers with a reset
    else:
        writer.close()
    await asyncio.sleep(0)


async def stream_until_done(router: Router, reset: bool, body: dict[str, object] | None = None) -> None:
    """Read the stream up to its `[DONE]` event, as an SSE client that stops there, and close."""
    body = body or {"model": "m", "messages": [], "stream": True}
    reader, writer = await ask(router, body)
    seen = await reader.readuntil(b"data: [DONE]\n\n")
    assert seen.startswith(b"HTTP/1.1 200")
    await hang_up(writer, reset)


async def whole_body(router: Router, reset: bool) -> None:
    """Read the head and exactly its Content-Length of body, and close."""
    reader, writer = await ask(router, {"model": "m", "messages": []})
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:"))
    assert json.loads(await reader.readexactly(length))["choices"]
    await hang_up(writer, reset)


def counted(router: Router, code: int) -> float:
    """`phalanx_router_requests_total` of endpoint `a` with this code, from the router's own page."""
    sample = f'phalanx_router_requests_total{{code="{code}",endpoint="a",model="m"}} '
    for line in router.metrics.exposition().decode().splitlines():
        if line.startswith(sample):
            return float(line.removeprefix(sample))
    return 0.0


def access_statuses(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [json.loads(r.getMessage())["status"] for r in caplog.records if r.name == "phalanx.router.access"]


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.parametrize("tail_s", [0.0, 0.05], ids=["done-with-end", "done-then-end"])
async def test_a_stream_read_through_done_counts_as_complete(
    router: Router, caplog: pytest.LogCaptureFixture, reset: bool, tail_s: float
) -> None:
    async with upstreams(FakeUpstream("a", done_tail_s=tail_s)) as (a,):
        router.set_endpoints([a.endpoint()])
        with caplog.at_level(logging.INFO, logger="phalanx.router.access"):
            for _ in range(ROUNDS):
                await stream_until_done(router, reset)
            await eventually(lambda: len(access_statuses(caplog)) == ROUNDS)
        await eventually(lambda: router.in_flight() == {"a": 0})
    assert access_statuses(caplog) == [200] * ROUNDS
    assert counted(router, 200) == ROUNDS
    assert counted(router, 499) == 0


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
async def test_a_whole_body_read_then_closed_counts_as_complete(
    router: Router, caplog: pytest.LogCaptureFixture, reset: bool
) -> None:
    async with upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        with caplog.at_level(logging.INFO, logger="phalanx.router.access"):
            for _ in range(ROUNDS):
                await whole_body(router, reset)
            await eventually(lambda: len(access_statuses(caplog)) == ROUNDS)
    assert access_statuses(caplog) == [200] * ROUNDS
    assert counted(router, 200) == ROUNDS
    assert counted(router, 499) == 0


async def test_an_engine_dropping_its_connection_after_done_still_answered_in_full(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    async with upstreams(FakeUpstream("a", mode="die-after-done", done_tail_s=0.02)) as (a,):
        router.set_endpoints([a.endpoint()])
        with caplog.at_level(logging.INFO, logger="phalanx.router.access"):
            reader, writer = await ask(router, {"model": "m", "messages": [], "stream": True})
            # To the end of the chunked body: the router ends it (the connection stays open).
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)
            writer.close()
            await eventually(lambda: len(access_statuses(caplog)) == 1)
    # The client's stream ends at the engine's own `[DONE]`, with no error event after it.
    assert answer.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n") and b"error" not in answer, answer
    assert access_statuses(caplog) == [200]
    assert counted(router, 200) == 1
    text = router.metrics.exposition().decode()
    assert 'phalanx_router_stream_failures_total{endpoint="a"}' not in text


async def test_a_hang_up_before_done_stays_499_and_cancels_the_engine(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    async with upstreams(FakeUpstream("a", events=50, stream_pause_s=0.02)) as (a,):
        router.set_endpoints([a.endpoint()])
        with caplog.at_level(logging.INFO, logger="phalanx.router.access"):
            reader, writer = await ask(router, {"model": "m", "messages": [], "stream": True})
            await reader.readuntil(b"\n\n")  # the head
            await reader.readuntil(b"\n\n")  # the first event
            await hang_up(writer, reset=False)
            await eventually(lambda: a.cancelled == 1)
            await eventually(lambda: len(access_statuses(caplog)) == 1)
    assert access_statuses(caplog) == [499]
    assert counted(router, 499) == 1
    assert counted(router, 200) == 0


async def pd_streams_until_done(router: Router, session: aiohttp.ClientSession, reset: bool) -> None:
    """ROUNDS streams through prefill and decode, each closed right after `[DONE]`: all disaggregated."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": LONG}], "max_tokens": 4, "stream": True}
    for _ in range(ROUNDS):
        await stream_until_done(router, reset, body)
    url = router.url

    async def settled() -> bool:
        return await metric(session, url, "phalanx_router_requests_total") == ROUNDS

    deadline = asyncio.get_running_loop().time() + 3.0
    while not await settled():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert await metric(session, url, "phalanx_router_requests_total", code="200") == ROUNDS
    assert await metric(session, url, "phalanx_router_pd_requests_total", mode="disaggregated") == ROUNDS
    assert await metric(session, url, "phalanx_router_pd_requests_total") == ROUNDS


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
async def test_vllm_pd_streams_read_through_done_count_as_disaggregated(
    start_sim: Callable[..., SimProcess], reset: bool
) -> None:
    prefill = start_prefill(start_sim)
    decode = start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    async with HeldAfterDone(decode.base_url) as held:
        pair = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(held.url, "decode", "d0")]
        async with pd_router(pair) as (router, session):
            await pd_streams_until_done(router, session, reset)
            await no_leak(session, prefill, decode)


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
async def test_sglang_pd_streams_read_through_done_count_as_disaggregated(
    start_sim: Callable[..., SimProcess], reset: bool
) -> None:
    prefill, decode, port = start_pair(start_sim)
    async with HeldAfterDone(decode.base_url) as held:
        pair = sglang_endpoints(prefill, decode, port)
        pair[1] = replace(pair[1], url=held.url)
        async with pd_router(pair) as (router, session):
            await pd_streams_until_done(router, session, reset)
