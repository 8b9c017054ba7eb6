"""Client connections the router must not keep forever: idle ones, half a request head, too many.
Raw sockets on loopback against a router with short, test-sized timeouts and caps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import aiohttp
import pytest

from phalanx.router import Router, RouterConfig

from .fakes import FakeUpstream, eventually, upstreams

pytestmark = pytest.mark.component

HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
BODY = b'{"model": "m", "prompt": "x"}'


@asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[Router]:
    config = RouterConfig(scrape_interval_s=None, health_check_interval_s=None, total_timeout_s=10.0, **kw)
    router = Router(config)
    await router.start("127.0.0.1", 0)
    try:
        async with upstreams(FakeUpstream("a")) as (a,):
            router.set_endpoints([a.endpoint()])
            yield router
    finally:
        await router.stop(drain_timeout_s=2.0)


class Socket:
    """A raw client connection; `closed_within` reads until the router closes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = b""

    async def closed_within(self, seconds: float) -> float:
        started = time.perf_counter()
        async with asyncio.timeout(seconds):
            try:
                while chunk := await self.reader.read(65536):
                    self.received += chunk
            except ConnectionError:  # closed while we were still writing: a reset, not an EOF
                pass
        return time.perf_counter() - started


@asynccontextmanager
async def sockets(router: Router, n: int, send: bytes = b"") -> AsyncIterator[list[Socket]]:
    host, port = router.url.removeprefix("http://").rsplit(":", 1)
    opened: list[Socket] = []
    try:
        for _ in range(n):
            socket = Socket(*await asyncio.open_connection(host, int(port)))
            socket.writer.write(send)
            opened.append(socket)
        yield opened
    finally:
        for socket in opened:
            socket.writer.close()


async def ask(router: Router) -> int:
    """One real request on a new connection."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.post(f"{router.url}/v1/completions", data=BODY) as resp,
    ):
        await resp.read()
        return resp.status


async def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async with serving(idle_timeout_s=0.5) as router, sockets(router, 1) as (idle,):
        assert await idle.closed_within(3) >= 0.4


async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout() -> None:
    request = HEAD + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY
    async with serving(idle_timeout_s=0.5) as router, sockets(router, 1, request) as (client,):
        await client.closed_within(3)
    assert client.received.startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("trickle", [False, True])
async def test_half_a_request_head_is_closed_after_the_head_timeout(trickle: bool) -> None:
    async with (
        serving(head_timeout_s=0.3, idle_timeout_s=30) as router,
        sockets(router, 1, HEAD[:20]) as (s,),
    ):
        if trickle:  # a byte now and then does not buy more time
            for byte in HEAD[20:40]:
                await asyncio.sleep(0.05)
                if s.writer.is_closing():
                    break
                s.writer.write(bytes([byte]))
        assert await s.closed_within(3) < 2
    assert router.guard.head_timeouts == 1


async def test_past_the_connection_cap_idle_connections_make_room_for_a_request() -> None:
    async with (
        serving(max_connections=4, idle_timeout_s=30, head_timeout_s=30) as router,
        sockets(router, 4, HEAD[:10]) as held,  # idle, or slowly sending a head: not in a request
    ):
        await eventually(lambda: router.guard.open_connections == 4)
        assert await ask(router) == 200
        assert router.guard.evictions == 1
        assert await held[0].closed_within(3) < 3  # the one idle longest went
        assert router.guard.open_connections <= 4


async def test_with_every_connection_in_a_request_a_newcomer_is_turned_away_until_one_ends() -> None:
    half_body = HEAD + b"Content-Length: 100\r\n\r\n" + b'{"model": '
    async with AsyncExitStack() as stack:
        router = await stack.enter_async_context(serving(max_connections=2, body_timeout_s=1.0))
        slow = await stack.enter_async_context(sockets(router, 2, half_body))
        await eventually(lambda: router.guard.open_connections == 2)
        await asyncio.sleep(0.1)  # both heads are in: their requests are reading bodies
        (turned_away,) = await stack.enter_async_context(sockets(router, 1))
        await turned_away.closed_within(3)
        assert turned_away.received.startswith(b"HTTP/1.1 503 Service Unavailable")
        assert b'"code": "server_busy"' in turned_away.received
        assert router.guard.refusals == 1
        for s in slow:  # their bodies never come: 408 and closed at the body timeout
            await s.closed_within(3)
            assert s.received.startswith(b"HTTP/1.1 408")
        assert await ask(router) == 200
