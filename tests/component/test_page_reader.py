"""Bounded reads of metrics pages against a real HTTP server on loopback: a page that cannot be
read whole within the timeout is None (unknown), and no more than `concurrency` reads run at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from phalanx.http.pages import PageReader
from tests.component.embedded.harness import free_port, served

pytestmark = pytest.mark.component

TIMEOUT = 0.4


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="vllm:num_requests_waiting 3\n")

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=503, text="vllm:num_requests_waiting 0\n")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(TIMEOUT * 5)
        return web.Response(text="late\n")

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    app = web.Application()
    for path, handler in (("/ok", ok), ("/error", error), ("/hang", hang), ("/big", big)):
        app.router.add_get(path, handler)
    async with served(app) as url:
        yield url


async def test_a_page_is_read_whole(server: str) -> None:
    reader = PageReader(timeout=TIMEOUT)
    async with reader.session() as session:
        assert await reader.read(session, f"{server}/ok") == "vllm:num_requests_waiting 3\n"


async def test_what_cannot_be_read_is_none(server: str) -> None:
    reader = PageReader(timeout=TIMEOUT, max_bytes=4096)
    closed = f"http://127.0.0.1:{free_port()}/metrics"
    started = time.monotonic()
    async with reader.session() as session:
        pages = await asyncio.gather(
            *(
                reader.read(session, url)
                for url in (f"{server}/error", f"{server}/hang", f"{server}/big", closed)
            )
        )
    assert pages == [None, None, None, None]  # an error page's figures are not taken either
    assert time.monotonic() - started < TIMEOUT * 3


async def test_reads_wait_for_a_free_slot(server: str) -> None:
    # One slot: two hanging pages take a timeout each, one after the other.
    reader = PageReader(timeout=TIMEOUT, concurrency=1)
    started = time.monotonic()
    async with reader.session() as session:
        assert await asyncio.gather(
            reader.read(session, f"{server}/hang"), reader.read(session, f"{server}/hang")
        ) == [
            None,
            None,
        ]
    assert TIMEOUT * 1.8 <= time.monotonic() - started < TIMEOUT * 4
