"""What the routing core needs of a client's request and of the answer it writes back.

Two servers carry proxied requests: aiohttp's (`web.Request`, `web.StreamResponse`) and the
router's own front (`router/front.py`, on httptools). Both satisfy these Protocols, so the same
routing code (keys, limits, admission, policies, retries, the relay) serves either.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from phalanx.http.guard import close_after


class BodyStream(Protocol):
    """The request body as it arrives (aiohttp's `StreamReader` is one)."""

    def read_nowait(self, n: int = -1) -> bytes: ...
    def at_eof(self) -> bool: ...
    async def readany(self) -> bytes: ...


class RawPath(Protocol):
    @property
    def raw_path_qs(self) -> str: ...


class ClientRequest(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def rel_url(self) -> RawPath: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def content(self) -> BodyStream: ...
    @property
    def transport(self) -> asyncio.Transport | None: ...


class ClientReply(Protocol):
    """An answer to the client: its head may be changed until `prepared`."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> CIMultiDict[str]: ...
    @property
    def prepared(self) -> bool: ...
    async def prepare(self, request: Any) -> object: ...
    async def write(self, data: bytes) -> None: ...
    async def write_eof(self, data: bytes = b"") -> None: ...


class OwnReplies(abc.ABC):
    """A request whose server makes its own replies (the front's), not aiohttp's."""

    @abc.abstractmethod
    def reply(self, status: int, reason: str, headers: Iterable[tuple[str, str]]) -> ClientReply: ...

    @abc.abstractmethod
    def close_after(self) -> None:
        """Close the connection once the answer is written (nothing more is read from it)."""


class HeadWithBodyResponse(web.StreamResponse):
    # aiohttp's own switch (off for `web.Response`): the head waits in the writer for the first write.
    _send_headers_immediately = False


def new_reply(
    request: ClientRequest, status: int, reason: str, headers: Iterable[tuple[str, str]]
) -> ClientReply:
    """A streamed answer whose head waits for the first body bytes, on the request's own server."""
    if isinstance(request, OwnReplies):
        return request.reply(status, reason, headers)
    return HeadWithBodyResponse(status=status, reason=reason or None, headers=CIMultiDict(headers))


def close_when_answered(request: ClientRequest) -> None:
    """The connection closes once the answer is out (a body too slow to wait for, say)."""
    if isinstance(request, OwnReplies):
        request.close_after()
    elif isinstance(request, web.Request):
        close_after(request)
