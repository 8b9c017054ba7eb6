"""The router's httptools front against clients that break the rules: heads aiohttp refuses,
pipelining without reading, and a routing failure after part of an answer was written."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from phalanx.router.client import ClientReply
from phalanx.router.front import FrontRequest
from phalanx.router.server import Router
from tests.unit.router.test_front import BODY, connect, get, post, routed, served_by_front
from tests.unit.router.test_upstream import Backend, Handler, answer, echo

HEAD = b"POST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n" % len(BODY)


@pytest.mark.parametrize(
    "extra",
    [
        b"",  # no Host in an HTTP/1.1 request
        b"Host: a\r\nHost: b\r\n",
        b"Host: a\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\n",
        b"Host: a\r\nUser-Agent: a\r\nUser-Agent: b\r\n",
    ],
)
async def test_a_head_aiohttp_refuses_is_not_served_by_the_front(extra: bytes) -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(HEAD + extra + b"\r\n" + BODY)
        refused = await client.answer()
        assert refused.status == 400 and not served_by_front(refused)
        assert await client.closed()
        assert backend.heads == []


async def test_an_http_10_request_needs_no_host() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n" + BODY)
        got = await client.answer()
        assert got.status == 200 and served_by_front(got)


def held_first(backend: Backend, release: asyncio.Event) -> Handler:
    """Answers each request with its body, the first only once `release` is set."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await backend.read_request(reader)
            await release.wait()
            writer.write(answer(body))
            await writer.drain()

    return handler


async def test_a_client_pipelining_without_reading_is_not_read_ahead_without_bound() -> None:
    release = asyncio.Event()
    bodies = [b'{"model":"m","prompt":"%d","pad":"%s"}' % (i, b"x" * 1000) for i in range(2000)]
    async with (
        Backend(lambda b: held_first(b, release)) as backend,
        routed(backend, access_log=False) as router,
        connect(router) as client,
    ):
        client.writer.write(b"".join(post(body=body) for body in bodies))  # 2 MB, none read back
        await asyncio.sleep(0.5)
        front = router._front
        assert front is not None and len(front.connections) == 1
        (conn,) = front.connections
        # Parsed ahead: at most the bound and what one read of the socket held (256 KiB).
        assert len(conn._queue) <= 16 + 256
        release.set()
        for body in bodies:  # and reading resumes: every one answered, in order
            got = await client.answer()
            assert got.status == 200 and got.body == body


async def test_a_failure_after_part_of_an_answer_is_never_followed_by_another_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(self: Router, request: FrontRequest) -> ClientReply:
        reply = request.reply(200, "OK", [("Content-Type", "text/plain")])
        await reply.prepare(request)
        await reply.write(b"part of it")
        raise RuntimeError("a bug in the routing core")

    monkeypatch.setattr(Router, "handle", broken)
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post())
        seen = b""
        async with asyncio.timeout(3):
            while data := await client.reader.read(65536):
                seen += data
        assert seen.startswith(b"HTTP/1.1 200 OK\r\n") and b"part of it" in seen
        assert seen.count(b"HTTP/1.1 ") == 1  # the connection closes: no 500 after it
        assert not seen.endswith(b"0\r\n\r\n")  # nor a last chunk: the client sees it cut short


async def test_bytes_for_aiohttp_waiting_behind_the_fronts_request_are_not_read_without_bound() -> None:
    release = asyncio.Event()
    async with (
        Backend(lambda b: held_first(b, release)) as backend,
        routed(backend) as router,
        connect(router) as client,
    ):
        # A request the front serves (held upstream), one it hands to aiohttp, then an 8 MB one.
        large = b'{"model":"m","prompt":"%s"}' % (b"x" * (8 << 20))
        client.writer.write(post() + get("/health") + post(body=large))
        await asyncio.sleep(0.5)
        front = router._front
        assert front is not None and len(front.connections) == 1
        (conn,) = front.connections
        waiting = conn._handover
        assert waiting is not None and len(waiting) <= 2 * 256 * 1024
        release.set()
        assert (await client.answer()).body == BODY
        health = await client.answer()
        assert health.status == 200 and not served_by_front(health)
        assert (await client.answer(timeout_s=10)).body == large


async def test_an_upgrade_pipelined_behind_a_proxied_post_goes_to_aiohttp() -> None:
    upgrade = b"GET /health HTTP/1.1\r\nHost: r\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post() + post() + upgrade)
        first, second = await client.answer(), await client.answer()
        assert first.status == second.status == 200 and served_by_front(second)
        assert not served_by_front(await client.answer())


def odd_header(backend: Backend) -> Handler:
    """Answers with a header that is UTF-8 but not Latin-1, and one that is not even UTF-8."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await backend.read_request(reader)
            writer.write(answer(b"{}", extra=b"X-Utf8: caf\xc3\xa9 \xe2\x82\xac\r\nX-Raw: \xff\xfe\r\n"))
            await writer.drain()

    return handler


async def test_an_engines_header_that_is_not_latin_1_reaches_the_client_as_sent() -> None:
    async with Backend(odd_header) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post())
        head = await client.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nX-Utf8: caf\xc3\xa9 \xe2\x82\xac\r\n" in head and b"\r\nX-Raw: \xff\xfe\r\n" in head


async def test_a_clients_header_that_is_not_ascii_reaches_the_engine_as_sent() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post(extra=b"X-Utf8: caf\xc3\xa9\r\nX-Raw: a\xffb\r\n"))
        assert (await client.answer()).status == 200
        (head,) = backend.heads
        assert b"\r\nX-Utf8: caf\xc3\xa9\r\n" in head and b"\r\nX-Raw: a\xffb\r\n" in head


LARGE = b'{"text":"%s"}' % (b"a" * 200_000)


def in_two_parts(backend: Backend) -> Handler:
    """A non-streamed answer with a Content-Length whose body comes in two parts."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await backend.read_request(reader)
            whole = answer(LARGE)
            writer.write(whole[:1000])
            await writer.drain()
            await asyncio.sleep(0.2)  # past the relay's head hold: the head goes before the rest
            writer.write(whole[1000:])
            await writer.drain()

    return handler


async def test_an_answer_with_a_length_relayed_in_parts_keeps_its_length_and_the_connection() -> None:
    async with Backend(in_two_parts) as backend, routed(backend) as router, connect(router) as client:
        for _ in range(2):  # the second on the same connection: the first was framed right
            await client.send(post())
            got = await client.answer()
            assert got.status == 200 and served_by_front(got) and got.body == LARGE
            assert got.headers["content-length"] == str(len(LARGE))


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


async def test_connections_closed_at_every_stage_leave_no_task_timer_or_socket_behind() -> None:
    stages = [b"", post()[:20], post()[:-5], post(), post(body=b'{"model":"m","prompt":"held"}')]

    async def cycle(rounds: int) -> None:
        for _ in range(rounds):
            for data in stages:
                async with connect(router) as client:
                    if data:
                        await client.send(data)
                    if data == post():
                        assert (await client.answer()).status == 200
                    elif data.endswith(b'held"}'):
                        await asyncio.sleep(0.01)  # at the engine when the client goes

    def held_only(backend: Backend) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                body = await backend.read_request(reader)
                if b"held" in body:
                    await reader.read()  # answers nothing: gone when the router drops it
                    return
                writer.write(answer(body))
                await writer.drain()

        return handler

    async with Backend(held_only) as backend, routed(backend, access_log=False) as router:
        await cycle(5)  # the upstream pool and the loop's own tasks settle
        await asyncio.sleep(0.2)
        tasks, fds = len(asyncio.all_tasks()), open_fds()
        await cycle(60)
        await asyncio.sleep(0.3)
        front = router._front
        assert front is not None and not front.connections
        assert router.in_flight() == {"e": 0}
        assert len(asyncio.all_tasks()) <= tasks and open_fds() <= fds + 2
