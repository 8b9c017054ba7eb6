"""The router's httptools front on real sockets: proxied requests it serves, the others it hands
to aiohttp on the same connection, and the connection rules both must keep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import httptools
import pytest

from phalanx.router.endpoints import Endpoint
from phalanx.router.server import Router, RouterConfig, running
from tests.unit.router.test_upstream import Backend, Handler, answer, echo, on_both_loops

BODY = b'{"model":"m","prompt":"hi"}'


class Answer:
    """One HTTP answer read off a raw socket with httptools' response parser."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


class Client:
    """A raw connection: requests are bytes as written, answers parsed one after the other."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._left = b""

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout_s: float = 5.0) -> Answer:
        got = Answer()
        parser = httptools.HttpResponseParser(got)
        data, self._left = self._left, b""
        async with asyncio.timeout(timeout_s):
            while True:
                if data:
                    try:
                        parser.feed_data(data)
                    except httptools.HttpParserUpgrade:  # pragma: no cover
                        raise
                    except httptools.HttpParserError:
                        # Bytes of the next answer after this one's end (pipelined answers).
                        if not got.done:
                            raise
                if got.done:
                    got.status = parser.get_status_code()
                    return got
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("closed before the answer was whole")

    async def closed(self, timeout_s: float = 3.0) -> bool:
        async with asyncio.timeout(timeout_s):
            return await self.reader.read(1) == b""


@contextlib.asynccontextmanager
async def connect(router: Router) -> AsyncIterator[Client]:
    host, port = router.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield Client(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def post(
    path: str = "/v1/completions", body: bytes = BODY, extra: bytes = b"", version: bytes = b"1.1"
) -> bytes:
    return (
        b"POST %s HTTP/%s\r\nHost: r\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
        % (path.encode(), version, len(body), extra, body)
    )


def get(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: r\r\n\r\n" % path.encode()


def config(**kw: object) -> RouterConfig:
    base: dict[str, object] = {
        "front": "httptools",
        "scrape_interval_s": None,
        "health_check_interval_s": None,
        "access_log": True,
    }
    base.update(kw)
    return RouterConfig(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def routed(backend: Backend, **kw: object) -> AsyncIterator[Router]:
    async with running(Router(config(**kw))) as router:
        router.set_endpoints([Endpoint(name="e", url=backend.url, serving="s", group_index=0, models=("m",))])
        yield router


def served_by_front(got: Answer) -> bool:
    return "server" not in got.headers  # aiohttp names itself in every answer; the front does not


async def check_shared_connection() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post())
        first = await client.answer()
        assert first.status == 200 and served_by_front(first)
        assert first.body == b'{"echo":' + BODY + b"}"
        assert len(first.headers["x-request-id"]) == 32
        await client.send(get("/metrics"))
        metrics = await client.answer()
        assert metrics.status == 200 and not served_by_front(metrics)
        assert b'phalanx_router_requests_total{code="200",endpoint="e",model="m"} 1.0' in metrics.body
        # aiohttp owns the connection now, proxied paths included.
        await client.send(post("/v1/chat/completions") + get("/v1/models"))
        chat, models = await client.answer(), await client.answer()
        assert chat.status == 200 and chat.body.startswith(b'{"echo":')
        assert models.status == 200 and json.loads(models.body)["data"][0]["id"] == "m"
        assert len(backend.heads) == 2


test_a_proxied_post_then_other_paths_on_one_connection = on_both_loops(check_shared_connection)


async def test_another_path_first_then_a_proxied_post() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(get("/v1/models"))
        models = await client.answer()
        assert models.status == 200 and not served_by_front(models)
        await client.send(post())
        proxied = await client.answer()
        assert proxied.status == 200 and proxied.body.startswith(b'{"echo":')


async def test_a_proxied_path_with_another_method_is_aiohttps() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(get("/v1/completions"))
        refused = await client.answer()
        assert refused.status == 405 and refused.headers["allow"] == "POST"
        assert backend.heads == []


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        a, b = b'{"model":"m","prompt":"a"}', b'{"model":"m","prompt":"b"}'
        await client.send(post(body=a) + post("/v1/chat/completions", body=b) + get("/health") + post())
        answers = [await client.answer() for _ in range(4)]
        assert [x.status for x in answers] == [200, 200, 200, 200]
        assert answers[0].body == b'{"echo":' + a + b"}" and served_by_front(answers[0])
        assert answers[1].body == b'{"echo":' + b + b"}" and served_by_front(answers[1])
        assert json.loads(answers[2].body)["status"] == "ok"
        assert answers[3].body == b'{"echo":' + BODY + b"}"


async def test_a_request_written_a_byte_at_a_time() -> None:
    chunked = (
        b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    )
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        for request in (chunked, post()):
            for i in range(len(request)):
                await client.send(request[i : i + 1])
            got = await client.answer()
            assert got.status == 200 and served_by_front(got)
            assert got.body == b'{"echo":' + BODY + b"}"


@pytest.mark.parametrize(
    "request_bytes",
    [b"NOT HTTP AT ALL\r\n\r\n", post() + b"POST /v1/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n"],
)
async def test_a_malformed_request_gets_400_and_the_connection_closes(request_bytes: bytes) -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(request_bytes)
        if request_bytes.startswith(b"POST"):
            assert (await client.answer()).status == 200  # the good one before it
        refused = await client.answer()
        assert refused.status == 400
        assert await client.closed()


async def test_headers_over_the_limit_are_refused() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post(extra=b"X-Big: " + b"a" * 9000 + b"\r\n"))
        refused = await client.answer()
        assert refused.status in (400, 431)
        assert await client.closed()
        assert backend.heads == []


async def test_http_10_gets_a_length_and_the_connection_closes() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post(version=b"1.0"))
        got = await client.answer()
        assert got.status == 200 and served_by_front(got)
        assert got.headers["content-length"] == str(len(got.body))
        assert await client.closed()


async def test_connection_close_is_honoured() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(post(extra=b"Connection: close\r\n"))
        got = await client.answer()
        assert got.status == 200 and got.headers["connection"] == "close"
        assert await client.closed()


def streaming(backend: Backend, gone: asyncio.Event) -> Handler:
    """One SSE event, then holds the stream open; sets `gone` when the router closes it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'1a\r\ndata: {"choices":[1]}\n\n\r\n'
        )
        await writer.drain()
        await reader.read()  # EOF: the router dropped the upstream request
        gone.set()

    return handler


async def test_a_client_gone_mid_stream_cancels_the_upstream_and_is_logged_499(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = asyncio.Event()
    caplog.set_level(logging.INFO, "phalanx.router.access")
    async with Backend(lambda b: streaming(b, gone)) as backend, routed(backend) as router:
        async with connect(router) as client:
            await client.send(post(body=b'{"model":"m","prompt":"hi","stream":true}'))
            head = await client.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
            assert b"data: " in await client.reader.readuntil(b"\n\n")
        async with asyncio.timeout(3):
            await gone.wait()
        await asyncio.sleep(0.05)
        exposition = router.metrics.exposition().decode()
        assert 'phalanx_router_requests_total{code="499",endpoint="e",model="m"} 1.0' in exposition
        assert router.in_flight() == {"e": 0}
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "phalanx.router.access"]
    assert [(line["status"], line.get("error")) for line in lines] == [(499, "client_gone")]


def slow(backend: Backend) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await backend.read_request(reader)
            if b"slow" in body:
                await asyncio.sleep(0.4)
            writer.write(answer(b"{}"))
            await writer.drain()

    return handler


async def test_stop_drains_in_flight_and_closes_idle_connections() -> None:
    async with Backend(slow) as backend:
        router = Router(config())
        await router.start()
        router.set_endpoints([Endpoint(name="e", url=backend.url, serving="s", group_index=0, models=("m",))])
        try:
            async with connect(router) as idle, connect(router) as busy:
                await idle.send(post())
                assert (await idle.answer()).status == 200
                await busy.send(post(body=b'{"model":"m","prompt":"slow"}'))
                await asyncio.sleep(0.1)  # in flight at the backend
                url = router.url
                stopping = asyncio.create_task(router.stop())
                assert await idle.closed(timeout_s=0.3)  # closed at once, not at the drain's end
                finished = await busy.answer()
                assert finished.status == 200 and finished.headers["connection"] == "close"
                await stopping
                host, port = url.removeprefix("http://").split(":")
                with pytest.raises(OSError):
                    await asyncio.open_connection(host, int(port))
        finally:
            await router.stop()


async def test_an_idle_kept_alive_connection_closes_after_the_idle_timeout() -> None:
    async with Backend(echo) as backend, routed(backend, idle_timeout_s=0.3) as router:
        async with connect(router) as client:
            for _ in range(4):  # in use more often than the timeout: kept
                await client.send(post())
                assert (await client.answer()).status == 200
                await asyncio.sleep(0.15)
            started = asyncio.get_running_loop().time()
            assert await client.closed(timeout_s=2)
            assert 0.1 < asyncio.get_running_loop().time() - started < 1.0
        async with connect(router) as silent:  # never sends a byte
            assert await silent.closed(timeout_s=2)


async def test_a_request_longer_than_the_idle_timeout_is_not_cut() -> None:
    async with (
        Backend(slow) as backend,
        routed(backend, idle_timeout_s=0.2) as router,
        connect(router) as client,
    ):
        await client.send(post(body=b'{"model":"m","prompt":"slow"}'))
        assert (await client.answer()).status == 200


async def test_expect_100_continue_is_handed_to_aiohttp() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        head, _, body = post(extra=b"Expect: 100-continue\r\n").partition(b"\r\n\r\n")
        await client.send(head + b"\r\n\r\n")
        interim = await client.reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100")
        await client.send(body)
        got = await client.answer()
        assert got.status == 200 and not served_by_front(got)
        assert got.body == b'{"echo":' + BODY + b"}"


async def test_a_header_that_never_ends_is_refused_before_the_head_timeout() -> None:
    async with Backend(echo) as backend, routed(backend) as router, connect(router) as client:
        await client.send(b"POST /v1/completions HTTP/1.1\r\nX-Long: ")
        for _ in range(24):  # 1.5 MiB of one header value, no end in sight
            client.writer.write(b"a" * 65536)
        with contextlib.suppress(ConnectionError):
            await client.writer.drain()
        refused = await client.answer(timeout_s=3)
        assert refused.status in (400, 431)
        assert backend.heads == []
