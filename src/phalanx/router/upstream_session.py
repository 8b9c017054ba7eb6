"""One way to send a proxied request whatever the endpoint's scheme: plain http through the
`UpstreamPool`, https through the aiohttp session (TLS stays with a library that does it well).

Both give the relay the same response shape and the same errors (`UpstreamError`, `TimeoutError`).
"""

from __future__ import annotations

import io
from typing import Protocol

import aiohttp

from phalanx.router.upstream import Headers, PooledResponse, UpstreamError, UpstreamPool, os_error_text

# Bodies above this go to aiohttp a chunk at a time (it warns about large bytes).
_SEND_WHOLE_MAX = 2**20

# aiohttp failures where the endpoint cannot have started on the request: safe to send it
# elsewhere. A reset or disconnect before the response head may follow a partial start, but the
# engine aborts a request whose connection dropped, so a retry does not double the work.
_RETRYABLE = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)


class UpstreamResponse(Protocol):
    """What the relay reads of an endpoint's response."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    origin: str
    content_type: str
    content_encoding: str

    def read_nowait(self) -> bytes: ...

    def at_eof(self) -> bool: ...

    async def readany(self) -> bytes: ...

    async def read(self) -> bytes: ...

    def finish(self) -> None: ...


class SessionResponse:
    """An aiohttp response in the relay's shape, its errors mapped to `UpstreamError`."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.reason = response.reason or ""
        self.headers = list(response.headers.items())
        self.origin = str(response.url.origin())
        self.content_type = response.content_type
        self.content_encoding = response.headers.get("Content-Encoding", "").strip().lower()

    def read_nowait(self) -> bytes:
        return self._response.content.read_nowait()

    def at_eof(self) -> bool:
        return self._response.content.at_eof()

    async def readany(self) -> bytes:
        try:
            return await self._response.content.readany()
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__, str(exc)) from exc

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__, str(exc)) from exc

    def finish(self) -> None:
        # Reuse the connection only when the body was read to the end.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class Upstreams:
    """Sends proxied requests: the pool for `http://` endpoints, `session` for the others (or for
    all of them when `pool` is None)."""

    def __init__(self, session: aiohttp.ClientSession, pool: UpstreamPool | None) -> None:
        self.session = session
        self.pool = pool

    async def request(
        self,
        method: str,
        url: str,
        target: str,
        headers: Headers,
        body: bytes,
    ) -> UpstreamResponse:
        """`url` is the endpoint's origin, `target` the path and query as the client sent them.
        Raises `UpstreamError` or `TimeoutError` (the total timeout, before the response head)."""
        pool = self.pool
        if pool is not None and url.startswith("http://"):
            pooled: PooledResponse = await pool.request(method, url, target, headers, body)
            return pooled
        return await self._session_request(method, url + target, headers, body)

    async def _session_request(self, method: str, url: str, headers: Headers, body: bytes) -> SessionResponse:
        try:
            response = await self.session.request(
                method,
                url,
                data=body if len(body) <= _SEND_WHOLE_MAX else io.BytesIO(body),
                headers=list(headers),
            )
        except aiohttp.ClientConnectorError as exc:
            detail = str(exc)
            if not isinstance(exc, aiohttp.ClientSSLError):  # TLS failures carry no errno worth naming
                # In the pool's words, with the errno aiohttp's message leaves out.
                detail = f"cannot connect to {exc.host}:{exc.port}: {os_error_text(exc.os_error)}"
            raise UpstreamError(type(exc).__name__, detail, retryable=True, refused=True) from exc
        except _RETRYABLE as exc:
            raise UpstreamError(type(exc).__name__, str(exc), retryable=True) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(type(exc).__name__, str(exc)) from exc
        return SessionResponse(response)
