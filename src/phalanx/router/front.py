"""The router's own HTTP/1.1 server for the proxied paths, on httptools (llhttp), in front of aiohttp.

aiohttp's server costs more per request than the router's own work; the proxied POSTs are most
of a router's traffic, so they are parsed here and their answers written straight to the socket
(a non-streamed answer as one write, head and body). Every other request (`/metrics`, the web
view, a GET, an `Expect: 100-continue`, an `Upgrade`, anything malformed or over a limit) is
handed to aiohttp's own protocol at its first byte, with the bytes received so far, and aiohttp
serves that connection from then on: it keeps its own answers and errors for everything the
front does not implement.

One request is served at a time per connection (pipelined ones wait in order). A client that
goes away cancels its request's task, as aiohttp's handler cancellation does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, ClassVar, cast

import httptools
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from phalanx.http.errors import error_response
from phalanx.http.guard import Inner, Link
from phalanx.router.client import ClientReply, OwnReplies
from phalanx.router.logs import failure

logger = logging.getLogger("phalanx.router")

Handle = Callable[["FrontRequest"], Awaitable[ClientReply]]

# aiohttp's own limits on a request head: past them it is handed over, and aiohttp refuses it.
MAX_LINE = 8190
MAX_FIELD = 8190
MAX_HEADERS = 128
MAX_HEAD_BYTES = 64 * 1024
# Body bytes buffered ahead of the reader before the socket is no longer read.
_BODY_HIGH = 256 * 1024
# Bytes kept to find where a pipelined request begins; past this, behind a body, a hand-over
# closes the connection instead (a client pipelining a GET behind a large POST in one send).
_RAW_KEEP = 1 << 20
_SKIP_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive"))
# Headers aiohttp refuses to see twice (its parser's singletons): such a request is handed over.
_SINGLETONS = frozenset(
    (
        "content-length",
        "content-location",
        "content-range",
        "content-type",
        "etag",
        "host",
        "max-forwards",
        "server",
        "transfer-encoding",
        "user-agent",
    )
)
# Requests parsed ahead of their answers before the socket is no longer read (a client pipelining
# without reading its answers must not fill the router's memory).
_MAX_QUEUED = 16


class _HandOver(Exception):
    """Raised from a parser callback: this request is aiohttp's."""


class FrontBody:
    """A request body as the parser delivers it; read by `read_body` like aiohttp's StreamReader."""

    def __init__(self, conn: FrontConnection) -> None:
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _BODY_HIGH:
            self._conn.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def complete(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        return self._size

    def read_nowait(self, n: int = -1) -> bytes:
        if self._error is not None:
            raise self._error
        if not self._chunks:
            return b""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        self._conn.resume_reading()
        return data

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    async def readany(self) -> bytes:
        while not self._chunks and not self._eof and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.read_nowait()


class FrontRequest(OwnReplies):
    """A proxied request as the routing core sees it (`client.ClientRequest`)."""

    method = "POST"

    def __init__(
        self, conn: FrontConnection, path: str, raw_path_qs: str, headers: list[tuple[str, str]], http10: bool
    ) -> None:
        self._conn = conn
        self.path = path
        self.raw_path_qs = raw_path_qs
        self.headers = CIMultiDictProxy(CIMultiDict(headers))
        self.http10 = http10
        self.keep_alive = True
        self.content = FrontBody(conn)
        self.closing = False
        self.answer_begun = False  # a head has gone to the client

    @property
    def rel_url(self) -> FrontRequest:
        return self  # has `raw_path_qs`, as yarl's URL does

    @property
    def remote(self) -> str | None:
        return self._conn.remote

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.transport

    def reply(self, status: int, reason: str, headers: Iterable[tuple[str, str]]) -> ClientReply:
        return FrontReply(self, status, reason, headers)

    def close_after(self) -> None:
        self.closing = True


class FrontReply:
    """An answer written straight to the connection. The head waits for the first body bytes; a
    body given whole to `write_eof` goes with a Content-Length in the same write, others chunked
    (or, to an HTTP/1.0 client, ended by closing the connection)."""

    def __init__(
        self, request: FrontRequest, status: int, reason: str, headers: Iterable[tuple[str, str]]
    ) -> None:
        self._request = request
        self.status = status
        self.reason = reason
        self.headers: CIMultiDict[str] = CIMultiDict(headers)
        self.prepared = False
        self.finished = False
        self._head_sent = False
        self._chunked = False

    async def prepare(self, request: Any) -> object:
        self.prepared = True
        return None

    async def write(self, data: bytes) -> None:
        out = data
        if not self._head_sent:
            length = self.headers.get("Content-Length")
            request = self._request
            self._chunked = length is None and not request.http10
            if length is None and request.http10:
                request.keep_alive = False  # the body ends with the connection
            out = self._head(length) + (self._frame(data) if data else b"")
        elif self._chunked and data:
            out = self._frame(data)
        conn = self._request._conn
        conn.send(out)
        await conn.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        if self.finished:
            return
        self.finished = True
        conn = self._request._conn
        if not self._head_sent:
            length = self.headers.get("Content-Length")
            conn.send(self._head(length if length is not None else str(len(data))) + data)
        elif self._chunked:
            conn.send((self._frame(data) if data else b"") + b"0\r\n\r\n")
        elif data:
            conn.send(data)
        await conn.drain()

    def _frame(self, data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data

    def _head(self, length: str | None) -> bytes:
        self._head_sent = self.prepared = True
        request = self._request
        request.answer_begun = True
        conn = request._conn
        close = not request.keep_alive or request.closing or conn.front.stopping
        request.keep_alive = not close
        reason = self.reason or _phrase(self.status)
        lines = [f"HTTP/1.1 {self.status} {reason}\r\n"]
        for name, value in self.headers.items():
            if name.lower() not in _SKIP_HEADERS:
                lines.append(f"{name}: {value}\r\n")
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        elif self._chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        if close:
            lines.append("Connection: close\r\n")
        elif request.http10:
            lines.append("Connection: keep-alive\r\n")
        lines.append(f"Date: {_Date.now()}\r\n\r\n")
        # As aiohttp writes them: UTF-8, and bytes an engine sent that were not UTF-8 given back as they were.
        return "".join(lines).encode("utf-8", "surrogateescape")


def _front_serves(headers: list[tuple[str, str]], http11: bool) -> bool:
    """Whether the front may serve a request with these headers, else aiohttp answers it: no
    `Expect` or `Upgrade`, no singleton header twice, and a `Host` in an HTTP/1.1 request (what
    aiohttp's parser refuses with a 400, the front must not forward)."""
    seen: set[str] = set()
    for name, _ in headers:
        lower = name.lower()
        if lower in _SINGLETONS:
            if lower in seen:
                return False
            seen.add(lower)
        elif lower in {"expect", "upgrade"}:
            return False
    return not http11 or "host" in seen


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class _Date:
    """The Date header, formatted once a second."""

    second: ClassVar[int] = 0
    text: ClassVar[str] = ""

    @classmethod
    def now(cls) -> str:
        now = int(time.time())
        if cls.second != now:
            cls.second, cls.text = now, email.utils.formatdate(now, usegmt=True)
        return cls.text


class _Count:
    """Counts the requests in bytes parsed again (to find where a pipelined one begins)."""

    def __init__(self) -> None:
        self.completed = 0

    def on_message_complete(self) -> None:
        self.completed += 1


def _completed_in(raw: memoryview) -> int:
    """How many requests `raw` holds whole."""
    count = _Count()
    # A malformed or upgrading request after the whole ones stops the parser: they are counted.
    with contextlib.suppress(httptools.HttpParserError, httptools.HttpParserUpgrade):
        httptools.HttpRequestParser(count).feed_data(raw)
    return count.completed


def _message_start(raw: bytes, completed: int) -> int:
    """Where the request after the first `completed` ones in `raw` begins: the shortest prefix
    holding them whole, found by halving (each probe parses in C; byte by byte in Python would
    cost an event loop a second per few MiB a client sends)."""
    if completed == 0:
        return 0
    view = memoryview(raw)
    low, high = 0, len(raw)  # the prefix of `high` bytes holds them, that of `low` does not
    while high - low > 1:
        middle = (low + high) // 2
        if _completed_in(view[:middle]) >= completed:
            high = middle
        else:
            low = middle
    return high


class FrontConnection:
    """One client connection, served by the front until a request it does not serve comes."""

    def __init__(self, front: Front, link: Link, server: Callable[[], web.RequestHandler]) -> None:
        self.front = front
        self._link = link
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        # Bytes since the last point known to lie between requests, and requests completed in them.
        self._raw: bytearray | None = bytearray()
        self._completed = 0
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._parsing: FrontRequest | None = None  # its body still arriving
        self._queue: collections.deque[FrontRequest] = collections.deque()
        # Serves the queued requests one by one for the connection's life, waiting in between.
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._serving = False
        self._handover: bytearray | None = None
        self._eof = False
        self._dead = False  # the parser failed in a body: nothing more is read
        self._reading_paused = False
        self._write_paused: asyncio.Future[None] | None = None
        # When the connection last became idle (None: a request is arriving or being served); the
        # timer is armed once and looks again when it fires, so a request costs no timer of its own.
        self._idle_since: float | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- asyncio.Protocol, through the guard ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else None
        self.front.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._handover is not None:
            self._handover += data  # for aiohttp, once the front's requests are answered
            if len(self._handover) > _BODY_HIGH:
                self.pause_reading()
            return
        if self._dead:
            return
        self._cancel_idle()
        raw = self._raw
        if raw is not None:
            raw += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HandOver):
                self._start_hand_over()
            else:
                logger.warning("closing a client connection: %s", exc.__context__ or exc)
                self._close()
            return
        except httptools.HttpParserError:
            if self._parsing is not None:  # a body that breaks its framing: the request is refused
                self._parsing.content.fail(web.RequestPayloadError("malformed body"))
                self._parsing.closing = True
                self._dead = True
                return
            self._start_hand_over()  # aiohttp answers the malformed head with its 400
            return
        between = self._parsing is None and not self._in_head
        if between:
            # Between requests: the bytes so far are no longer needed to find one's start.
            self._raw = bytearray()
            self._completed = 0
        elif raw is not None and len(raw) > _RAW_KEEP and self._parsing is not None:
            self._raw = None  # a large body: the next request's start is no longer tracked
        if self._in_head and (self._head_bytes > MAX_HEAD_BYTES or len(self._raw or b"") > _RAW_KEEP):
            # Past aiohttp's limits (a field httptools is still gathering counts in the raw bytes).
            self._start_hand_over()
        elif between and not self._queue and not self._serving:
            self._arm_idle()

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.front.connections.discard(self)
        self._stop_idle_timer()
        if self._task is not None:
            self._task.cancel()  # the client went away: so does its request
        for request in self._queue:
            request.content.fail(ConnectionResetError("the client closed the connection"))
        waiter = self._write_paused
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the client closed the connection"))
            waiter.exception()  # retrieved: nobody may be waiting
        self.transport = None

    def pause_writing(self) -> None:
        if self._write_paused is None:
            self._write_paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        waiter, self._write_paused = self._write_paused, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def force_close(self) -> None:
        self._close()

    # -- httptools callbacks ----------------------------------------------------------------

    _in_head = False

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if len(self._url) > MAX_LINE:
            raise _HandOver()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if len(name) > MAX_FIELD or len(value) > MAX_FIELD or len(self._headers) >= MAX_HEADERS:
            raise _HandOver()
        # As aiohttp reads them, so a header goes on to the engine with the bytes the client sent.
        self._headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        url = self._url.decode("latin-1")
        path, _, _ = url.partition("?")
        version = parser.get_http_version()
        if (
            self._handover is not None
            or parser.get_method() != b"POST"
            or path not in self.front.paths
            or parser.should_upgrade()
            or not _front_serves(self._headers, version == "1.1")
        ):
            raise _HandOver()
        http10 = version == "1.0"
        request = FrontRequest(self, path, url, self._headers, http10)
        request.keep_alive = parser.should_keep_alive()
        self._parsing = request
        self._queue.append(request)
        if len(self._queue) > _MAX_QUEUED:
            self.pause_reading()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())
        else:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self._parsing is not None:
            self._parsing.content.feed(body)

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.content.feed_eof()
            self._parsing = None
        self._completed += 1

    # -- serving ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while self.transport is not None:
            if not self._queue:
                if self._handover is not None:
                    self._hand_over()
                    return
                self._arm_idle()
                self._wakeup = loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                continue
            request = self._queue[0]
            self._serving = True
            self._link.request_started()
            try:
                await self._answer(request)
            finally:
                self._serving = False
                self._link.request_ended()
            self._queue.popleft()
            self.resume_reading()
            if not self._reusable(request):
                self._close()
                return

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _reusable(self, request: FrontRequest) -> bool:
        """Whether the connection may carry another request after this one's answer."""
        whole = request.content.complete  # else the rest of its body would be read as a request
        return request.keep_alive and not request.closing and whole and not self.front.stopping

    async def _answer(self, request: FrontRequest) -> None:
        try:
            reply = await self.front.handle(request)
        except Exception as exc:  # the routing core answers its own errors: this is a bug
            logger.error("unexpected error on POST %s: %s", request.path, failure(exc))
            if request.answer_begun:
                request.keep_alive = False  # never a second answer after part of one: cut it short
                return
            reply = error_response(500, "The router failed to handle the request.")
        try:
            if isinstance(reply, FrontReply):
                if not reply.finished:
                    request.keep_alive = False  # cut short: the client must not take it as whole
                return
            if isinstance(reply, web.Response) and not reply.prepared:
                body = reply.body
                data = body if isinstance(body, bytes) else b""
                answer = FrontReply(request, reply.status, reply.reason, reply.headers.items())
                await answer.write_eof(data)
                return
            request.keep_alive = False  # no other kind is made for the front
        except ConnectionResetError:
            request.keep_alive = False

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(data)

    async def drain(self) -> None:
        waiter = self._write_paused
        if waiter is not None:
            await asyncio.shield(waiter)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Reads again, unless too many requests wait or the bytes arriving are too far ahead."""
        parsing = self._parsing
        handover = self._handover
        if (
            len(self._queue) > _MAX_QUEUED
            or (parsing is not None and parsing.content.buffered > _BODY_HIGH)
            or (handover is not None and len(handover) > _BODY_HIGH)
        ):
            return
        self._unpause()

    def _unpause(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- hand-over to aiohttp ---------------------------------------------------------------

    def _start_hand_over(self) -> None:
        """This request is aiohttp's: from its first byte, once the front's own ones are answered."""
        self._in_head = False
        raw = self._raw
        if raw is None:
            self._close()  # its start was not kept (behind a large body)
            return
        start = _message_start(bytes(raw), self._completed)
        rest = bytes(raw[start:]).lstrip(b"\r\n")
        self._handover = bytearray(rest)
        self._raw = None
        if self._task is None:
            self._hand_over()
        else:
            self._wake()  # the serving task hands over once the front's requests are answered

    def _hand_over(self) -> None:
        transport = self.transport
        data = self._handover
        if transport is None or data is None or self._closed:
            return
        self._stop_idle_timer()
        self.front.connections.discard(self)
        self._unpause()
        handler = self._server()
        self._link.hand_over(handler)
        handler.connection_made(transport)
        if self._write_paused is not None:
            handler.pause_writing()
        if data:
            handler.data_received(bytes(data))
        if self._eof:
            handler.eof_received()

    # -- closing ----------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_since = loop.time()
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(self._idle_since + self.front.idle_timeout_s, self._idle_check)

    def _cancel_idle(self) -> None:
        self._idle_since = None  # the timer stays: it looks again when it fires

    def _idle_check(self) -> None:
        self._idle_timer = None
        since = self._idle_since
        if since is None:
            return  # in use: armed again when it is idle
        deadline = since + self.front.idle_timeout_s
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            self._close()
        else:
            self._idle_timer = loop.call_at(deadline, self._idle_check)

    def _stop_idle_timer(self) -> None:
        self._idle_since = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    @property
    def busy(self) -> bool:
        return self._serving or bool(self._queue)

    def _close(self) -> None:
        self._stop_idle_timer()
        if self.transport is not None:
            self.transport.close()


class Front:
    """The front of one router: its handler of proxied requests and its open connections."""

    def __init__(self, handle: Handle, paths: Iterable[str], idle_timeout_s: float) -> None:
        self.handle = handle
        self.paths = frozenset(paths)
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[FrontConnection] = set()
        self.stopping = False

    def protocol(self, link: Link, server: Callable[[], web.RequestHandler]) -> Inner:
        return FrontConnection(self, link, server)

    def drain(self) -> None:
        """Stopping: idle connections close now, busy ones once their answer is out."""
        self.stopping = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.force_close()

    def close(self) -> None:
        for conn in list(self.connections):
            conn.force_close()
