"""The router's pooled upstream client against real loopback servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine

import pytest
import uvloop

from phalanx.router.upstream import HIGH_WATER, UpstreamError, UpstreamPool, os_error_text

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def on_both_loops(test: Callable[[], Coroutine[None, None, None]]) -> Callable[[str], None]:
    """The test on asyncio's loop and on uvloop's (`phalanx router` runs on uvloop, whose
    transports differ)."""

    @pytest.mark.parametrize("loop", LOOPS)
    def run(loop: str) -> None:
        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            runner.run(test())

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


class Backend:
    """An asyncio server running the handler made for it per connection; counts connections and
    keeps the request heads."""

    def __init__(self, handler_for: Callable[[Backend], Handler]) -> None:
        self._handler = handler_for(self)
        self.connections = 0
        self.heads: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Backend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        # Stopped by the test's end too (cancelled): ends quietly either way.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            await self._handler(reader, writer)
        writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request's head and body (bodies carry a Content-Length)."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await reader.readexactly(length)


def answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


@contextlib.asynccontextmanager
async def serving(handler_for: Callable[[Backend], Handler]) -> AsyncIterator[Backend]:
    async with Backend(handler_for) as backend:
        yield backend


def echo(backend: Backend) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await backend.read_request(reader)
            writer.write(answer(b'{"echo":' + body + b"}"))
            await writer.drain()

    return handler


async def post(pool: UpstreamPool, url: str, body: bytes = b"1") -> tuple[int, bytes]:
    """POST `body` to `url`, read the whole answer, finish with it."""
    resp = await pool.request(
        "POST", url, "/v1/completions?x=%23", [("Content-Type", "application/json")], body
    )
    try:
        return resp.status, await resp.read()
    finally:
        resp.finish()


@on_both_loops
async def test_requests_share_one_kept_alive_connection_and_go_out_whole() -> None:
    pool = UpstreamPool()
    async with serving(echo) as backend:
        assert await post(pool, backend.url, b"1") == (200, b'{"echo":1}')
        assert await post(pool, backend.url, b"22") == (200, b'{"echo":22}')
        assert backend.connections == 1
        assert pool.idle_count(backend.url) == 1
        host = backend.url.removeprefix("http://").encode()
        assert backend.heads[0] == (
            b"POST /v1/completions?x=%23 HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1\r\n\r\n"
        )
        # An endpoint URL with a path: requests go under it, on their own pooled connections.
        assert await post(pool, backend.url + "/prefix", b"3") == (200, b'{"echo":3}')
        assert backend.heads[-1].startswith(b"POST /prefix/v1/completions?x=%23 HTTP/1.1\r\n")
    await pool.close()


@on_both_loops
async def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error() -> None:
    def close_after_answering(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            body = await backend.read_request(reader)
            writer.write(answer(body))  # keep-alive by default, then closed anyway
            await writer.drain()

        return handler

    pool = UpstreamPool()
    async with serving(close_after_answering) as backend:
        assert await post(pool, backend.url, b"1") == (200, b"1")
        await asyncio.sleep(0.05)  # the server's close reaches the idle connection
        assert await post(pool, backend.url, b"2") == (200, b"2")
        assert backend.connections == 2
    await pool.close()


@on_both_loops
async def test_a_close_racing_the_next_request_is_retried_on_a_fresh_connection() -> None:
    # The server drops the kept-alive connection as the second request arrives on it, unanswered.
    served = 0

    def drop_second(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            while True:
                body = await backend.read_request(reader)
                served += 1
                if served == 2:
                    writer.transport.abort()
                    return
                writer.write(answer(body))
                await writer.drain()

        return handler

    pool = UpstreamPool()
    async with serving(drop_second) as backend:
        assert await post(pool, backend.url, b"1") == (200, b"1")
        assert await post(pool, backend.url, b"2") == (200, b"2")
        assert backend.connections == 2 and served == 3
    await pool.close()


@on_both_loops
async def test_a_fresh_connection_closed_before_answering_is_retryable() -> None:
    def hang_up(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)

        return handler

    pool = UpstreamPool()
    async with serving(hang_up) as backend:
        with pytest.raises(UpstreamError) as caught:
            await post(pool, backend.url)
        assert caught.value.retryable and not caught.value.refused
        assert caught.value.label == "ServerDisconnectedError"
        assert backend.connections == 1
    await pool.close()


@on_both_loops
async def test_a_refused_connection_is_retryable_and_says_so() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        pool = UpstreamPool()
        with pytest.raises(UpstreamError) as caught:
            await post(pool, f"http://127.0.0.1:{port}")
    assert caught.value.retryable and caught.value.refused
    assert caught.value.label == "ClientConnectorError"
    # The errno by name: the router's log must tell a refusal from a timeout or an unreachable address.
    assert f"127.0.0.1:{port}: ECONNREFUSED (Connection refused)" in str(caught.value)
    await pool.close()


@on_both_loops
async def test_a_chunked_event_stream_comes_out_event_by_event() -> None:
    events = [b'data: {"n": %d}\n\n' % n for n in range(3)] + [b"data: [DONE]\n\n"]
    next_event = asyncio.Event()

    def stream(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await backend.read_request(reader)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for event in events:
                    await next_event.wait()
                    next_event.clear()
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()

        return handler

    pool = UpstreamPool()
    async with serving(stream) as backend:
        resp = await pool.request("POST", backend.url, "/v1/completions", [], b"{}")
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert ("Transfer-Encoding", "chunked") in resp.headers
        for event in events:
            assert resp.read_nowait() == b""  # nothing before the server sends it
            next_event.set()
            assert await asyncio.wait_for(resp.readany(), 2) == event
        assert await resp.readany() == b""
        assert resp.at_eof()
        resp.finish()
        assert pool.idle_count(backend.url) == 1  # read to its end: kept
    await pool.close()


@on_both_loops
async def test_a_slow_reader_stops_the_connection_reading_and_still_gets_every_byte() -> None:
    size = 64 * HIGH_WATER
    finished = asyncio.Event()

    def big(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // 2**16):
                writer.write(b"x" * 2**16)
                await writer.drain()
            finished.set()

        return handler

    pool = UpstreamPool()
    async with serving(big) as backend:
        resp = await pool.request("POST", backend.url, "/", [], b"")
        await asyncio.sleep(0.3)  # the reader lags: the router holds a bounded part of the body
        held = len(resp.read_nowait())
        assert held <= HIGH_WATER + 2**18
        assert not finished.is_set()  # the server is held up by TCP, not buffered in the router
        got = held + len(await resp.read())
        assert got == size and resp.at_eof()
        resp.finish()
    await pool.close()


@on_both_loops
async def test_a_body_cut_short_is_an_error_and_the_connection_is_not_reused() -> None:
    def cut(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 40)
            await writer.drain()

        return handler

    pool = UpstreamPool()
    async with serving(cut) as backend:
        resp = await pool.request("POST", backend.url, "/", [], b"")
        assert await resp.readany() == b"y" * 40
        with pytest.raises(UpstreamError) as caught:
            await resp.readany()
        assert caught.value.label == "ClientPayloadError" and not caught.value.retryable
        assert not resp.at_eof()
        resp.finish()
        assert pool.idle_count(backend.url) == 0
    await pool.close()


@on_both_loops
async def test_an_unread_body_closes_its_connection() -> None:
    pool = UpstreamPool()
    async with serving(echo) as backend:
        resp = await pool.request("POST", backend.url, "/", [], b"1" * 10)
        resp.finish()  # nothing read: the rest of the body would come before the next answer
        assert pool.idle_count(backend.url) == 0
        assert await post(pool, backend.url) == (200, b'{"echo":1}')
        assert backend.connections == 2
    await pool.close()


@on_both_loops
async def test_connection_close_and_a_body_ended_by_the_close_are_not_reused() -> None:
    def until_close(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await backend.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"part two")
            await writer.drain()

        return handler

    pool = UpstreamPool()
    async with serving(until_close) as backend:
        assert await post(pool, backend.url) == (200, b"part one, part two")
        assert pool.idle_count(backend.url) == 0
    await pool.close()


@on_both_loops
async def test_the_total_timeout_before_the_head_and_during_the_body() -> None:
    def slow(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            body = await backend.read_request(reader)
            if body == b"body":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
                await writer.drain()
            await asyncio.sleep(5)

        return handler

    pool = UpstreamPool(total_timeout_s=0.2)
    async with serving(slow) as backend:
        with pytest.raises(TimeoutError):
            await post(pool, backend.url, b"head")
        resp = await pool.request("POST", backend.url, "/", [], b"body")
        assert await resp.readany() == b"first"
        with pytest.raises(TimeoutError):
            await resp.readany()
        resp.finish()
        assert pool.idle_count(backend.url) == 0
    await pool.close()


@on_both_loops
async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    pool = UpstreamPool(idle_timeout_s=0.1)
    async with serving(echo) as backend:
        await post(pool, backend.url)
        assert pool.idle_count(backend.url) == 1
        await asyncio.sleep(0.3)
        assert pool.idle_count(backend.url) == 0
        await post(pool, backend.url)
        assert backend.connections == 2
    await pool.close()


@on_both_loops
async def test_idle_connections_per_endpoint_are_bounded() -> None:
    pool = UpstreamPool(max_idle_per_origin=2)
    async with serving(echo) as backend:
        await asyncio.gather(*(post(pool, backend.url) for _ in range(5)))
        assert backend.connections == 5
        assert pool.idle_count(backend.url) == 2
    await pool.close()


@on_both_loops
async def test_an_interim_answer_is_skipped_and_a_malformed_one_is_an_error() -> None:
    def interim(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                body = await backend.read_request(reader)
                if body == b"bad":
                    writer.write(b"HTTP/1.1 abc\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"ok"))
                await writer.drain()

        return handler

    pool = UpstreamPool()
    async with serving(interim) as backend:
        assert await post(pool, backend.url) == (200, b"ok")
        with pytest.raises(UpstreamError) as caught:
            await post(pool, backend.url, b"bad")
        assert caught.value.label == "ClientResponseError" and not caught.value.retryable
    await pool.close()


@on_both_loops
async def test_an_answer_followed_by_more_bytes_is_read_and_its_connection_dropped() -> None:
    def chatty(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await backend.read_request(reader)
                writer.write(answer(b"one") + answer(b"two"))
                await writer.drain()

        return handler

    pool = UpstreamPool()
    async with serving(chatty) as backend:
        resp = await pool.request("POST", backend.url, "/", [], b"")
        assert await resp.read() == b"one"
        resp.finish()
        resp.finish()  # finishing twice keeps nothing twice
        assert pool.idle_count(backend.url) == 0
        assert await post(pool, backend.url) == (200, b"one")
        assert backend.connections == 2
    await pool.close()


def test_os_error_text_names_the_errno_and_keeps_the_message() -> None:
    # asyncio's own words for a refused connect, which name no errno.
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 8000)")
    said = "ECONNREFUSED (Connection refused): Connect call failed ('127.0.0.1', 8000)"
    assert os_error_text(refused) == said
    # The message is the errno's meaning: said once.
    assert os_error_text(TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))) == (
        "ETIMEDOUT (Connection timed out)"
    )
    # No errno (asyncio's "Multiple exceptions" from several addresses): the message as it is.
    assert os_error_text(OSError("Multiple exceptions: a, b")) == "Multiple exceptions: a, b"
