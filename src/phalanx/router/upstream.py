"""The upstream side of proxied requests over plain http: pooled keep-alive connections, the
response parsed by httptools (llhttp), the body handed out as it arrives.

A proxied request costs the router a fraction of what a general client library costs: the request
goes out in one write, the response head is parsed once, and body chunks are passed on as bytes.
Only what the relay needs is here; https endpoints go through the aiohttp session
(`upstream_session`).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import time
from collections.abc import Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools

Headers = Sequence[tuple[str, str]]

# Buffered body bytes of one response beyond which the connection stops reading (the client
# reads slower than the endpoint writes); reading resumes once the relay took them below the low mark.
HIGH_WATER = 256 * 2**10
LOW_WATER = 64 * 2**10


class UpstreamError(Exception):
    """An upstream failed. `label` names the failure as the router's metrics always have (the
    class names of the client library the router used before, so the label values stay the same).
    `retryable`: the endpoint cannot have answered anything yet, so another one may take the
    request. `refused`: no connection was made at all."""

    def __init__(self, label: str, detail: str, *, retryable: bool = False, refused: bool = False) -> None:
        super().__init__(f"{label}: {detail}")
        self.label = label
        self.retryable = retryable
        self.refused = refused


def connect_failed(detail: str) -> UpstreamError:
    return UpstreamError("ClientConnectorError", detail, retryable=True, refused=True)


def os_error_text(exc: OSError) -> str:
    """`exc` with its errno's name and meaning: asyncio's "Connect call failed (host, port)" names
    neither, and a refused connect (nothing listening) reads differently from an unreachable or
    timed-out one."""
    code = exc.errno
    if code is None:
        return str(exc)
    meaning = os.strerror(code)
    said = exc.strerror or ""
    text = f"{errno.errorcode.get(code, f'errno {code}')} ({meaning})"
    return f"{text}: {said}" if said and said != meaning else text


def disconnected(detail: str) -> UpstreamError:
    return UpstreamError("ServerDisconnectedError", detail, retryable=True)


def payload_error(detail: str) -> UpstreamError:
    return UpstreamError("ClientPayloadError", detail)


class _Connection(asyncio.Protocol):
    """One connection to an endpoint, carrying one request at a time (httptools callbacks are
    its methods). Reusable only after a response that was read to its end and allows keep-alive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._busy = False
        self._received = False
        self._extra = False
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._head: asyncio.Future[None] | None = None
        self.status = 0
        self.complete = False
        self.keep_alive = False
        self._until_close = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not derive from asyncio's classes).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._busy:  # bytes nobody asked for: the connection cannot be trusted again
            self._fail(disconnected("unexpected bytes on an idle connection"))
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("ClientResponseError", f"malformed response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_deadline()
        if self._busy and not self.complete and self._error is None:
            if self._head is not None and self._head.done() and self._until_close and exc is None:
                self.complete = True  # a body without a length ends with the connection
            elif not self._received:
                self._error = disconnected(f"closed before answering ({exc or 'end of stream'})")
            else:
                self._error = payload_error(f"closed mid-response ({exc or 'end of stream'})")
        self._wake()
        self._wake_drain()

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake_drain()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        # A second answer to one request: not part of it, and the connection is not reused.
        self._extra = self.complete
        if self._extra:
            self.keep_alive = False

    def on_status(self, reason: bytes) -> None:
        if not self._extra:
            self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._extra:
            return
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        if self._extra:
            return
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers = []
            self._reason = b""
            return
        self.status = status
        names = {name.lower() for name, _ in self._headers}
        self._until_close = "content-length" not in names and "transfer-encoding" not in names
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._extra:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._extra or self.status == 0:
            return  # the end of an interim answer
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
        self._cancel_deadline()
        self._wake()

    # -- one request ---------------------------------------------------------------------------

    def begin(self, deadline: float | None) -> asyncio.Future[None]:
        """Start a request on this connection; the future resolves when the response head is in."""
        self._busy = True
        self._received = self._extra = False
        self.complete = self.keep_alive = self._until_close = False
        self.status = 0
        self._reason = b""
        self._headers = []
        self._head = head = self._loop.create_future()
        if deadline is not None:
            self._deadline = self._loop.call_at(deadline, self._timed_out)
        return head

    async def write(self, head: bytes, body: bytes) -> None:
        transport = self.transport
        if transport is None or self.closed:
            raise disconnected("connection closed")
        if len(body) <= 64 * 2**10:
            transport.write(head + body)  # one write, one segment for small requests
        else:
            transport.writelines((head, body))
        if self._drain is not None:
            await self._drain

    @property
    def reason(self) -> str:
        return self._reason.decode("latin-1")

    @property
    def headers(self) -> list[tuple[str, str]]:
        return self._headers

    @property
    def received_any(self) -> bool:
        return self._received

    def error(self) -> BaseException | None:
        return self._error

    def take(self) -> bytes:
        """All body bytes buffered now (empty if none)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def drained(self) -> bool:
        return self.complete and not self._chunks

    async def wait(self) -> None:
        """Until more body bytes, the end of the body, or an error."""
        if self._chunks or self.complete or self._error is not None:
            return
        self._waiter = waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def reusable(self) -> bool:
        return (
            self.complete and self.keep_alive and not self.closed and not self._chunks and self._error is None
        )

    def finish(self) -> None:
        """The request is over: the connection is idle (if reusable) or closed."""
        self._busy = False
        self._head = None
        self._cancel_deadline()
        if not self.reusable():
            self.close()

    def close(self) -> None:
        self._cancel_deadline()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()
        self.closed = True
        self._wake()

    def _timed_out(self) -> None:
        self._deadline = None
        self._fail(TimeoutError())

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _wake(self) -> None:
        head = self._head
        if self._error is not None and head is not None and not head.done():
            head.set_exception(self._error)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)


class PooledResponse:
    """An endpoint's response: its head, and its body as it arrives. `finish()` once done with
    it: the connection goes back to the pool only when the body was read to its end."""

    def __init__(self, pool: UpstreamPool, conn: _Connection, origin: str) -> None:
        self._pool = pool
        self._conn = conn
        self._finished = False
        self.origin = origin
        self.status = conn.status
        self.reason = conn.reason
        self.headers: list[tuple[str, str]] = conn.headers
        self.content_type, self.content_encoding = _content_fields(self.headers)

    def read_nowait(self) -> bytes:
        return self._conn.take()

    def at_eof(self) -> bool:
        return self._conn.drained

    async def readany(self) -> bytes:
        """The next body bytes; empty at the end. Raises `UpstreamError` or `TimeoutError`."""
        conn = self._conn
        while True:
            data = conn.take()
            if data or conn.complete:
                return data
            error = conn.error()
            if error is not None:
                raise error
            await conn.wait()

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._pool.release(self)


def _content_fields(headers: Headers) -> tuple[str, str]:
    content_type, encoding = "", ""
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value.split(";", 1)[0].strip().lower()
        elif lowered == "content-encoding":
            encoding = value.strip().lower()
    return content_type, encoding


class _Origin:
    __slots__ = ("host", "host_header", "idle", "port", "prefix")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"not a plain http URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.prefix = parts.path  # an endpoint URL with a path: requests go under it
        self.idle: collections.deque[_Connection] = collections.deque()


class UpstreamPool:
    """Kept-alive connections per endpoint origin (`http://host:port`). Connections in use are not
    capped (engines queue internally; a cap here would queue invisibly); idle ones are, per
    origin, and are closed after `idle_timeout_s`."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = 5.0,
        total_timeout_s: float | None = None,
        idle_timeout_s: float = 30.0,
        max_idle_per_origin: int = 128,
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._total_timeout_s = total_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._max_idle = max_idle_per_origin
        self._origins: dict[str, _Origin] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def idle_count(self, url: str) -> int:
        origin = self._origins.get(url)
        return 0 if origin is None else sum(1 for conn in origin.idle if not conn.closed)

    async def request(
        self, method: str, url: str, target: str, headers: Headers, body: bytes
    ) -> PooledResponse:
        """Send one request to the endpoint at `url` (its origin); returns once the response head
        is in. Raises `UpstreamError` (`retryable` when the endpoint answered nothing) or
        `TimeoutError` (the total timeout, before the head)."""
        if self._closed:
            raise RuntimeError("upstream pool closed")
        origin = self._origins.get(url)
        if origin is None:
            origin = self._origins[url] = _Origin(url)
        loop = asyncio.get_running_loop()
        total = self._total_timeout_s
        deadline = None if total is None else loop.time() + total
        head = _request_head(method, origin.prefix + target, origin.host_header, headers, len(body))
        while True:
            conn = self._idle(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(loop, origin, deadline)
            answered = conn.begin(deadline)
            try:
                await conn.write(head, body)
                await answered
            except UpstreamError as exc:
                conn.finish()
                if reused and exc.retryable and not conn.received_any:
                    continue  # the endpoint closed a kept-alive connection: a fresh one, once per stale one
                raise
            except BaseException:
                conn.finish()
                raise
            return PooledResponse(self, conn, url)

    def release(self, response: PooledResponse) -> None:
        """Done with `response`: its connection is kept for the next request when it may be."""
        conn = response._conn
        conn.finish()
        if conn.closed or self._closed:
            conn.close()
            return
        origin = self._origins.get(response.origin)
        if origin is None or len(origin.idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        origin.idle.append(conn)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._idle_timeout_s / 2, self._sweep)

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for origin in self._origins.values():
            while origin.idle:
                origin.idle.pop().close()
        await asyncio.sleep(0)  # let the transports close

    def _idle(self, origin: _Origin) -> _Connection | None:
        idle = origin.idle
        while idle:
            conn = idle.pop()  # the most recently used: least likely closed by its server
            if not conn.closed and time.monotonic() - conn.idle_since < self._idle_timeout_s:
                return conn
            conn.close()
        return None

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: _Origin, deadline: float | None
    ) -> _Connection:
        timeout = self._connect_timeout_s
        if deadline is not None:
            timeout = min(timeout, max(deadline - loop.time(), 0.0))
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), origin.host, origin.port)
        except TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                raise
            raise UpstreamError(
                "ConnectionTimeoutError",
                f"no connection to {origin.host}:{origin.port} in {timeout:g}s",
                retryable=True,
            ) from None
        except OSError as exc:
            raise connect_failed(
                f"cannot connect to {origin.host}:{origin.port}: {os_error_text(exc)}"
            ) from exc
        return conn

    def _sweep(self) -> None:
        self._sweeper = None
        oldest = time.monotonic() - self._idle_timeout_s
        left = False
        for origin in self._origins.values():
            idle = origin.idle
            while idle and (idle[0].closed or idle[0].idle_since <= oldest):
                idle.popleft().close()
            left = left or bool(idle)
        if left and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self._idle_timeout_s / 2, self._sweep)


def _request_head(method: str, target: str, host: str, headers: Headers, length: int) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.append(f"Content-Length: {length}\r\n\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")
