"""The web view's HTTP side: the static page and script (package data, no build step), the state,
and its live stream.

`GET /ui` and `GET /ui/app.js` carry no data and need no key, so a browser can load the login
form; `GET /ui/state` and `GET /ui/events` are behind the API keys like the API (the script sends
the key the user typed as a Bearer header, read by `fetch`: an `EventSource` cannot send headers,
and a key in the URL would land in logs and history). The state comes from a provider the process
wires in: `phalanx up` hands the router its runtime's status, on Kubernetes the router's watches
and throttled lists.

`GET /ui/events` is a Server-Sent Events stream: one `state` event each time the document changes
(its hash differs from the last one sent), a comment line as heartbeat while nothing changes, at
most `max_streams` at once (more get a 429), all ended when the router stops so that draining is
never held up by a page left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from phalanx.http.errors import error_response
from phalanx.router.auth import KeyStore
from phalanx.router.rejection import Rejection

# Plain data shaped like `phalanx status`'s payload: servings, pods, policies, events.
Snapshot = Mapping[str, Any]


@dataclass(frozen=True)
class StateProvider:
    """Where the page's servings, pods, policies and events come from; `source` names it."""

    source: str
    snapshot: Callable[[], Awaitable[Snapshot]]


_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
# The page loads only its own script and style and talks only to its own origin.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def asset(name: str) -> bytes:
    return resources.files("phalanx.router").joinpath("ui", name).read_bytes()


def asset_handler(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = asset(name)  # read once: the files are part of the package

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=_TYPES[name], headers=_HEADERS)

    return serve


def state_response(document: Mapping[str, Any]) -> web.Response:
    return web.json_response(dict(document), headers={"Cache-Control": "no-store"})


# -- the live stream ---------------------------------------------------------------------------

HEARTBEAT = b": heartbeat\n\n"
_RETRY_SOON = {"Retry-After": "1"}
_STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a buffering proxy in front would hold the events back
}


@dataclass(frozen=True)
class StreamLimits:
    max_streams: int = 16  # each holds a connection and builds the document every `period_s`
    period_s: float = 1.0  # how often the document is built and compared
    heartbeat_s: float = 15.0  # a comment line after this long without an event

    def __post_init__(self) -> None:
        if self.max_streams < 0 or self.period_s <= 0 or self.heartbeat_s <= 0:
            raise ValueError("max_streams must be >= 0, period_s and heartbeat_s > 0")


def digest(document: Mapping[str, Any]) -> tuple[bytes, str]:
    """The document's JSON (keys sorted, so equal documents are equal bytes) and its hash."""
    body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return body, hashlib.sha256(body).hexdigest()


def next_frame(
    body: bytes, hashed: str, last_hash: str | None, now: float, last_sent: float, heartbeat_s: float
) -> bytes | None:
    """What to write: a `state` event when the document changed, a heartbeat comment when nothing
    was written for `heartbeat_s`, else nothing. JSON has no raw newlines, so one `data:` line holds it."""
    if hashed != last_hash:
        return b"event: state\ndata: " + body + b"\n\n"
    if now - last_sent >= heartbeat_s:
        return HEARTBEAT
    return None


def key_still_valid(keys: KeyStore, authorization: str | None) -> Callable[[], bool]:
    """Whether the key a stream was opened with is still in the key file (checked at each tick)."""

    def valid() -> bool:
        try:
            keys.authenticate(authorization)
        except Rejection:
            return False
        return True

    return valid


class StateStreams:
    """The open `GET /ui/events` streams: how many, and the signal that ends them all."""

    def __init__(
        self, limits: StreamLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or StreamLimits()
        self.clock = clock
        self.open = 0
        self._closing = asyncio.Event()
        # The last document built, shared by every stream: one build per period, not one per stream.
        self._built: tuple[float, bytes, str] | None = None
        self._building = asyncio.Lock()

    def reopen(self) -> None:
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Ends every stream at its next wait (the router is stopping); new ones get a 503."""
        self._closing.set()

    async def serve(
        self,
        request: web.Request,
        document: Callable[[], Awaitable[Mapping[str, Any]]],
        allowed: Callable[[], bool],
    ) -> web.StreamResponse:
        """Streams `document()` until the client leaves, the router stops, or `allowed()` turns
        false (its key was removed from the key file)."""
        if self._closing.is_set():
            return error_response(503, "The router is stopping.", code="stopping", headers=_RETRY_SOON)
        if self.open >= self.limits.max_streams:
            message = f"{self.open} web view streams are open, the most allowed; poll /ui/state instead."
            return error_response(429, message, code="too_many_streams", headers={"Retry-After": "30"})
        closing = self._closing
        self.open += 1
        try:
            response = web.StreamResponse(headers={**_HEADERS, **_STREAM_HEADERS})
            await response.prepare(request)
            last_hash: str | None = None
            last_sent = self.clock()
            with contextlib.suppress(ConnectionResetError):
                while not closing.is_set() and allowed():
                    body, hashed = await self._latest(document)
                    now = self.clock()
                    frame = next_frame(body, hashed, last_hash, now, last_sent, self.limits.heartbeat_s)
                    if frame is not None:
                        await response.write(frame)
                        last_hash, last_sent = hashed, now
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(closing.wait(), self.limits.period_s)
            return response
        finally:
            self.open -= 1

    async def _latest(self, document: Callable[[], Awaitable[Mapping[str, Any]]]) -> tuple[bytes, str]:
        """The document and its hash, built at most once per `period_s` whatever the number of
        streams (every stream shows the same document: keys only decide who may see it)."""
        async with self._building:
            if self._built is not None and self.clock() - self._built[0] < self.limits.period_s * 0.9:
                return self._built[1], self._built[2]
            body, hashed = digest(await document())
            self._built = (self.clock(), body, hashed)
            return body, hashed
