"""`Upstreams`: the pooled client and the aiohttp session give the relay the same answers and errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from phalanx.router.upstream import UpstreamError, UpstreamPool
from phalanx.router.upstream_session import Upstreams
from tests.unit.router.test_upstream import Backend, Handler, answer

EVENTS = b'data: {"n": 1}\n\ndata: [DONE]\n\n'


def answers(backend: Backend) -> Handler:
    """`/json`: a JSON body; `/sse`: an event stream, chunked; `/cut`: a body cut short."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await backend.read_request(reader)
            path = backend.heads[-1].split(b" ", 2)[1]
            if path == b"/json":
                writer.write(answer(b'{"ok":true}', b"X-Engine: sim\r\n"))
            elif path == b"/sse":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    b"%x\r\n%s\r\n0\r\n\r\n" % (len(EVENTS), EVENTS)
                )
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort")
                await writer.drain()
                return
            await writer.drain()

    return handler


@pytest.fixture(params=["pool", "session"])
async def upstreams(request: pytest.FixtureRequest) -> AsyncIterator[Upstreams]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        pool = UpstreamPool() if request.param == "pool" else None
        yield Upstreams(session, pool)
        if pool is not None:
            await pool.close()


async def test_both_clients_give_the_same_answer_shape(upstreams: Upstreams) -> None:
    async with Backend(answers) as backend:
        resp = await upstreams.request(
            "POST", backend.url, "/json", [("Content-Type", "application/json")], b"{}"
        )
        assert (resp.status, resp.reason, resp.content_type, resp.content_encoding) == (
            200,
            "OK",
            "application/json",
            "",
        )
        assert ("X-Engine", "sim") in resp.headers
        assert resp.origin.startswith("http://127.0.0.1:")
        assert await resp.read() == b'{"ok":true}' and resp.at_eof()
        resp.finish()

        resp = await upstreams.request("POST", backend.url, "/sse", [], b"{}")
        assert resp.content_type == "text/event-stream"
        assert await resp.read() == EVENTS
        resp.finish()
        assert backend.connections == 1  # both answers read to the end: one connection


async def test_both_clients_raise_the_same_errors(upstreams: Upstreams) -> None:
    async with Backend(answers) as backend:
        resp = await upstreams.request("POST", backend.url, "/cut", [], b"{}")
        with pytest.raises(UpstreamError) as cut:
            await resp.read()
        assert cut.value.label == "ClientPayloadError" and not cut.value.retryable
        resp.finish()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(UpstreamError) as refused:
            await upstreams.request("POST", url, "/json", [], b"{}")
    assert refused.value.label == "ClientConnectorError"
    assert refused.value.retryable and refused.value.refused
    assert "ECONNREFUSED (Connection refused)" in str(refused.value)
