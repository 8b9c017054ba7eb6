"""A tiny stand-in for a vLLM entry pod, with knobs for the failures the router must handle."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from phalanx.router import Endpoint


def sse_events(name: str, n: int = 32) -> list[bytes]:
    """A chat stream as vLLM frames it: one event per chunk, then `[DONE]`."""
    events = []
    for i in range(n):
        chunk = {
            "id": f"chatcmpl-{name}",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": f"{name}{i} "}, "finish_reason": None}],
        }
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


@dataclass
class FakeUpstream:
    name: str
    models: tuple[str, ...] = ("m",)
    # "ok", "503", "500", "reset" (before any byte), "die-after-head" (the head, then nothing),
    # "die-mid-stream" (SSE), "die-mid-stream-with-length" (SSE that declares a Content-Length),
    # "die-after-done" (SSE: every event, then the connection drops before the body's end),
    # "die-mid-body" (plain JSON)
    mode: str = "ok"
    # When set, completions wait for it (lets a test hold requests in flight).
    gate: asyncio.Event | None = None
    stream_pause_s: float = 0.0
    # Non-streaming answers carry `Set-Cookie: seen=<name>`.
    sets_cookie: bool = False
    # Streams: the pause between the response head and the first event (a slow first token).
    first_event_delay_s: float = 0.0
    events: int = 8
    # Streams: the pause between the last event (`[DONE]`) and the end of the body, as when an
    # engine's final chunk and its chunked-encoding terminator leave in separate writes.
    done_tail_s: float = 0.0
    # Keep request bodies as bytes (`received[i]["raw"]`): parsing a large one here would stall
    # the event loop the router under test shares.
    raw_bodies: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    started: int = 0
    finished: int = 0
    cancelled: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    def endpoint(self, *, models: tuple[str, ...] | None = None, **kw: Any) -> Endpoint:
        return Endpoint(
            name=self.name,
            url=self.url,
            serving="demo",
            group_index=0,
            models=self.models if models is None else models,
            **kw,
        )

    def stream_bytes(self) -> bytes:
        return b"".join(sse_events(self.name, self.events))

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = {"model": "m"} if self.raw_bodies else json.loads(raw)
        self.received.append(
            {
                "path": request.path,
                "query": request.rel_url.raw_query_string,
                "headers": request.headers.copy(),
                "body": body,
                "raw": raw,
            }
        )
        self.started += 1
        try:
            if self.mode == "503":
                return web.json_response({"error": {"message": "overloaded"}}, status=503)
            if self.mode == "500":  # as an engine answers a request that trips one of its bugs
                return web.json_response({"error": {"message": "internal error"}}, status=500)
            if self.mode == "reset":
                # The pod dies after reading the request, before any response byte.
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            if self.gate is not None:
                await self.gate.wait()
            if self.mode == "die-after-head":
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                assert request.transport is not None
                request.transport.abort()
                return resp
            if body.get("stream"):
                return await self._stream(request)
            if self.mode == "die-mid-body":
                resp = web.StreamResponse(headers={"Content-Type": "application/json"})
                await resp.prepare(request)
                await resp.write(b'{"id": "cmpl-' + self.name.encode())
                await asyncio.sleep(0.01)
                assert request.transport is not None
                request.transport.abort()
                return resp
            return web.json_response(
                {
                    "id": f"cmpl-{self.name}",
                    "object": "text_completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "text": self.name, "logprobs": None, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
                headers={"X-Upstream": self.name}
                | ({"Set-Cookie": f"seen={self.name}; Path=/"} if self.sets_cookie else {}),
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.finished += 1

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        if self.mode == "die-mid-stream-with-length":
            resp.content_length = 100_000
        await resp.prepare(request)
        if self.first_event_delay_s:
            await asyncio.sleep(self.first_event_delay_s)
        for i, event in enumerate(sse_events(self.name, self.events)):
            if self.mode.startswith("die-mid-stream") and i == 3:
                # Half an event, then the connection drops, as when the pod dies.
                await resp.write(event[:10])
                assert request.transport is not None
                request.transport.abort()
                return resp
            await resp.write(event)
            if self.stream_pause_s:
                await asyncio.sleep(self.stream_pause_s)
        if self.done_tail_s:
            await asyncio.sleep(self.done_tail_s)
        if self.mode == "die-after-done":
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 2**20)  # the router decides what is too large
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completion)
        app.router.add_post("/v1/chat/completions", self._completion)
        app.router.add_post("/v1/embeddings", self._completion)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def upstreams(*fakes: FakeUpstream) -> AsyncIterator[tuple[FakeUpstream, ...]]:
    try:
        for fake in fakes:
            await fake.start()
        yield fakes
    finally:
        for fake in fakes:
            if fake.gate is not None:
                fake.gate.set()
            await fake.stop()


def refused_url() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def eventually(predicate: Any, timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class HeldAfterDone:
    """A TCP relay in front of an engine that holds back whatever follows `data: [DONE]` in its
    answers for `delay_s`: the engine's last event and the end of its body then reach the router
    separately, as they may when a loaded engine or network splits them."""

    def __init__(self, target_url: str, delay_s: float = 0.05) -> None:
        host, port = target_url.removeprefix("http://").rsplit(":", 1)
        self._target = (host, int(port))
        self._delay_s = delay_s
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> HeldAfterDone:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _connected(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            engine_r, engine_w = await asyncio.open_connection(*self._target)
            try:
                asking = self._pipe(client_r, engine_w, hold=False)
                await asyncio.gather(asking, self._pipe(engine_r, client_w))
            finally:
                engine_w.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            client_w.close()
            self._pipes.discard(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: bool = True) -> None:
        done = b"data: [DONE]\n\n"
        while data := await src.read(65536):
            at = data.find(done) if hold else -1
            if at >= 0:
                dst.write(data[: at + len(done)])
                await dst.drain()
                await asyncio.sleep(self._delay_s)
                data = data[at + len(done) :]
            if data:
                dst.write(data)
                await dst.drain()
        dst.close()
