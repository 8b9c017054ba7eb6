"""Connection limits aiohttp's server lacks: a request-head timeout and a cap on open connections.

aiohttp closes a connection that has had no request for `keepalive_timeout` (counted from when it
opened or last answered), which also ends one whose request head never completes; nothing else
bounds a client that opens sockets and sends nothing, or half a head, or that keeps opening them
until the process has no file descriptors left. `ConnectionGuard` sits between the listening socket
and aiohttp's protocol, on asyncio's protocol interface only:

- head timeout: once the first byte of a request arrives on a connection that is between
  requests, its whole head must follow within `head_timeout_s`, else the connection is closed;
- connection cap: at `max_connections` open connections, a new one closes the connection that has
  been idle longest (no request in the application: between requests, or still sending its head)
  to make room. When every connection is in a request, the newcomer gets a 503 and is closed.

A connection is "in a request" from when the application's handler starts until the answer is
written, which `track` marks (it must be the app's outermost middleware) by writing the
answer itself before it returns. Body timeouts belong to whoever reads the body; `close_after`
lets it have the connection closed once its answer is out, with no lingering read of the rest.

Behind the guard sits aiohttp's protocol, or a front (`FrontFactory`) that serves some requests
itself, counts them through its `Link`, and hands the connection over to aiohttp for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from phalanx.http.errors import error_body

# Used when the open-file limit cannot be read, and the most the default takes.
DEFAULT_MAX_CONNECTIONS = 10_000
_CLOSE_AFTER = web.RequestKey("phalanx.http.guard.close_after", bool)


def default_max_connections() -> int:
    """Half the process's open-file limit (each proxied request also holds a socket towards its
    backend, and files and scrapes need some), at most `DEFAULT_MAX_CONNECTIONS`."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ValueError, OSError):
        return DEFAULT_MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, soft // 2))


@dataclass(frozen=True)
class GuardLimits:
    max_connections: int
    head_timeout_s: float

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.head_timeout_s <= 0:
            raise ValueError("head_timeout_s must be positive")


def close_after(request: web.Request) -> None:
    """Close this request's connection as soon as its answer is written (a client too slow to
    send its body gets its 408 and nothing more is read from it)."""
    request[_CLOSE_AFTER] = True


_REFUSED = json.dumps(
    error_body(503, "The server has as many connections open as it may; retry shortly.", code="server_busy")
).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSED), _REFUSED)
)


class Inner(Protocol):
    """The protocol behind the guard: aiohttp's `RequestHandler`, or a front that serves some
    requests itself and hands the connection over to aiohttp for the others."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool | None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def force_close(self) -> None: ...


class Link(Protocol):
    """What a front sees of its guarded connection."""

    def request_started(self) -> None: ...
    def request_ended(self) -> None: ...
    def hand_over(self, handler: web.RequestHandler) -> None: ...


# Makes the front of one connection: its link, and aiohttp's handler factory for hand-overs.
FrontFactory = Callable[[Link, Callable[[], web.RequestHandler]], Inner]


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol (or a front) behind it, and the guard's state."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.handler: Inner = cast(Inner, None)  # set by the guard's factory
        self.requests = 0  # in the application now
        self.idle_since = time.monotonic()
        self.refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if not self.guard._admit(self):
            self.refused = True
            self._transport.write(_REFUSAL)
            self._transport.close()
            return
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.requests == 0 and self._head_timer is None:
            # A request head is arriving: it has head_timeout_s to complete.
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self.guard.limits.head_timeout_s, self._head_expired)
        self.handler.data_received(data)

    def eof_received(self) -> None:
        if not self.refused:
            self.handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self.refused:
            return
        self.guard._forget(self)
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.refused:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.handler.resume_writing()

    def request_started(self) -> None:
        self.requests += 1
        self._cancel_head_timer()

    def request_ended(self) -> None:
        self.requests -= 1
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.handler.force_close()

    def hand_over(self, handler: web.RequestHandler) -> None:
        """From now on aiohttp's `handler` serves this connection (the caller feeds it)."""
        self.guard._rekey(self.handler, handler)
        self.handler = handler

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.requests == 0:
            self.guard.head_timeouts += 1
            self.close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


class ConnectionGuard:
    """Wraps an aiohttp `web.Server` (the protocol factory) with the limits in `GuardLimits`.

    `factory` goes to `loop.create_server`; `track` must be the outermost middleware of the
    application the server runs. `evictions`, `refusals` and `head_timeouts` count what it did.
    """

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        self._server: Callable[[], web.RequestHandler] | None = None
        self._front: FrontFactory | None = None
        self._open: dict[object, _Connection] = {}
        self.evictions = 0
        self.refusals = 0
        self.head_timeouts = 0

    def bind(self, server: web.Server, front: FrontFactory | None = None) -> None:
        """Connections go to `front` when given (it hands some over to `server`), else to `server`."""
        self._server = server
        self._front = front

    def factory(self) -> asyncio.Protocol:
        server = self._server
        assert server is not None, "bind() the aiohttp server first"
        conn = _Connection(self)
        conn.handler = server() if self._front is None else self._front(conn, server)
        return conn

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.limits.max_connections:
            idle = [c for c in self._open.values() if c.requests == 0]
            if not idle:
                self.refusals += 1
                return False
            evicted = min(idle, key=lambda c: c.idle_since)
            del self._open[evicted.handler]  # now, so that the next newcomer evicts another
            evicted.close()
            self.evictions += 1
        self._open[conn.handler] = conn
        return True

    def _forget(self, conn: _Connection) -> None:
        self._open.pop(conn.handler, None)

    def _rekey(self, old: object, new: object) -> None:
        conn = self._open.pop(old, None)
        if conn is not None:
            self._open[new] = conn

    async def track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The app's outermost middleware (mark it with `phalanx.http.errors.middleware`)."""
        conn = self._open.get(request.protocol)
        if conn is None:  # an app served some other way (a test client): nothing to track
            return await handler(request)
        conn.request_started()
        try:
            response = await handler(request)
            # Written here, so the connection counts as in a request until its answer is out.
            with contextlib.suppress(ConnectionError):  # gone, or closed on purpose: aiohttp's concern
                await response.prepare(request)
                await response.write_eof()
            return response
        finally:
            conn.request_ended()
            if request.get(_CLOSE_AFTER):
                conn.close()
