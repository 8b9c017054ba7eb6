"""The cost floor of a Python router's HTTP layer (issue 18): relays with no routing logic at all.

    python bench/router/floor.py aiohttp|httptools --port 9000 --backend URL [--backend URL ...]

`aiohttp`: aiohttp's web server and one ClientSession, round robin, each answer streamed back
chunk by chunk: what any router built on aiohttp pays per request before its own work.
`httptools`: asyncio Protocols with httptools (llhttp) parsing both sides and one pooled
keep-alive connection per client connection and backend: the floor of protocol-level handling.
Neither keeps a router's behaviours (retries, limits, metrics); they bound what the real router
could reach on each design, measured with `run.py capacity --contenders floor:aiohttp ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from typing import Any


def serve_aiohttp(port: int, backends: list[str]) -> None:
    import aiohttp
    from aiohttp import web

    turn = itertools.cycle(backends)
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": "application/json"}
        async with request.app[session_key].post(next(turn) + request.path, data=body, headers=headers) as up:
            response = web.StreamResponse(status=up.status, headers={"Content-Type": up.content_type})
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def session(app: web.Application) -> Any:
        app[session_key] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app[session_key].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/completions", handle)
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=_loop())


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to a backend; the response bytes go straight to the client."""

    def __init__(self, client: _Client) -> None:
        import httptools

        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.chunked = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        self.client.transport.write(
            f"HTTP/1.1 {status} OK\r\nContent-Type: {self.content_type}\r\n".encode()
            + (b"Transfer-Encoding: chunked\r\n\r\n" if self.chunked else b"")
        )

    content_type = "application/json"
    length = b"0"

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-type":
            self.content_type = value.decode()
        elif lower == b"transfer-encoding":
            self.chunked = True
        elif lower == b"content-length":
            self.length = value

    def on_message_begin(self) -> None:
        self.chunked = False

    def on_body(self, body: bytes) -> None:
        if self.chunked:
            self.client.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.client.body.append(body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self.client.transport.write(b"0\r\n\r\n")
        else:
            body = b"".join(self.client.body)
            self.client.body.clear()
            self.client.transport.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class _Client(asyncio.Protocol):
    def __init__(self, backends: list[tuple[str, int]], turn: itertools.cycle[int]) -> None:
        import httptools

        self.backends = backends
        self.turn = turn
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.upstreams: dict[int, _Upstream] = {}
        self.url = b""
        self.body: list[bytes] = []
        self.request: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        for up in self.upstreams.values():
            if up.transport is not None:
                up.transport.close()

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.request.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.request)
        self.request.clear()
        index = next(self.turn)
        head = b"POST %s HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        message = head % (self.url, len(body)) + body
        up = self.upstreams.get(index)
        if up is not None and up.transport is not None:
            up.transport.write(message)
            return
        asyncio.get_running_loop().create_task(self._connect(index, message))

    async def _connect(self, index: int, message: bytes) -> None:
        host, port = self.backends[index]
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: _Upstream(self), host, port)
        self.upstreams[index] = up
        up.transport.write(message)


def serve_httptools(port: int, backends: list[str]) -> None:
    addresses = []
    for url in backends:
        host, _, number = url.removeprefix("http://").partition(":")
        addresses.append((host, int(number)))
    turn = itertools.cycle(range(len(addresses)))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Client(addresses, turn), "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    _loop().run_until_complete(main())


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("design", choices=["aiohttp", "httptools"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", required=True)
    args = parser.parse_args()
    (serve_aiohttp if args.design == "aiohttp" else serve_httptools)(args.port, args.backend)


if __name__ == "__main__":
    main()
