"""Reading a request body within the router's limits: its size, its time, and the memory held.

The router reads a body whole before routing (it is parsed for the model and the prompt, and kept
for retries), so the body is what a client can use to make the router hold memory or wait. Every
limit is checked as bytes arrive, never after the whole body is in:

- `max_bytes`, the decoded body: a `Content-Length` above it is refused before a byte is read, and
  a compressed body is inflated at most `INFLATE_STEP` bytes at a time, with a yield to the event
  loop between steps, and refused as soon as it passes the limit (a 1 MB gzip of 1 GB costs no
  more than the limit);
- `timeout_s`: the whole body must arrive within this time of its head, so a client trickling a
  body cannot hold a connection and a buffer for long;
- `BodyBudget`: the bytes of every body held at once, by requests being read or proxied. A
  request that would pass it gets 503 with `Retry-After`; the others go on.

The router decodes `Content-Encoding` itself (aiohttp's own decoding is turned off) so that the
limit applies to what it inflates and an undecodable body is a 400 that names the encoding.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from phalanx.router.client import ClientRequest
from phalanx.router.rejection import Rejection

INFLATE_STEP = 1 << 20


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    timeout_s: float | None


class BodyBudget:
    """Bytes of request bodies the router may hold at once, all requests together."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the body budget must be at least 1 byte")
        self.limit = limit
        self.used = 0

    def hold(self) -> Held:
        return Held(self)


class Held:
    """What one request holds of a `BodyBudget`; `release()` gives it all back (call it once the
    request is answered: the body is kept for retries until then)."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.bytes = 0

    def grow(self, total: int) -> None:
        """Hold `total` bytes in all; raises `Rejection` 503 when the budget has no room."""
        extra = total - self.bytes
        if extra <= 0:
            return
        budget = self._budget
        if budget.used + extra > budget.limit:
            raise Rejection(
                503,
                "The router is holding as many request bodies as it may; retry shortly.",
                code="server_busy",
                headers={"Retry-After": "1"},
            )
        budget.used += extra
        self.bytes = total

    def release(self) -> None:
        self._budget.used -= self.bytes
        self.bytes = 0


class _Inflater(Protocol):
    @property
    def unconsumed_tail(self) -> bytes: ...
    @property
    def unused_data(self) -> bytes: ...
    @property
    def eof(self) -> bool: ...
    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...


def too_large(limit: int) -> Rejection:
    return Rejection(
        413,
        f"The request body is larger than this router accepts ({_size(limit)}); send a smaller "
        "request, or raise the router's limit (phalanx router --max-body-mib).",
        code="request_too_large",
    )


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _bad_encoding(encoding: str, why: str) -> Rejection:
    return Rejection(
        400,
        f"The request body is not valid {encoding} data ({why}), as its `Content-Encoding` says.",
        code="invalid_content_encoding",
    )


class _Decoder:
    """Content-Encoding `gzip` / `x-gzip` / `deflate` (zlib-wrapped, or raw as some clients send it)."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._inflater: _Inflater | None = None

    def _start(self, first: bytes) -> _Inflater:
        if self.encoding == "deflate":
            # RFC 9110 deflate is zlib-wrapped (a header whose low nibble is 8); take anything else
            # for raw deflate, as several clients send it.
            wbits = zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS
        else:
            wbits = zlib.MAX_WBITS | 16
        inflater: _Inflater = zlib.decompressobj(wbits)
        return inflater

    async def feed(self, chunk: bytes, out: bytearray, max_bytes: int, held: Held) -> None:
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = self._start(chunk)
        data = chunk
        while data:
            if inflater.eof:
                raise _bad_encoding(self.encoding, "bytes after its end")
            room = max_bytes - len(out) + 1  # one byte over tells that the limit is passed
            try:
                out += inflater.decompress(data, min(room, INFLATE_STEP))
            except zlib.error:
                raise _bad_encoding(self.encoding, "it cannot be inflated") from None
            if len(out) > max_bytes:
                raise too_large(max_bytes)
            held.grow(len(out))
            data = inflater.unconsumed_tail or inflater.unused_data
            if data:
                await asyncio.sleep(0)  # a large step is done: let other requests run

    def finish(self) -> None:
        if self._inflater is not None and not self._inflater.eof:
            raise _bad_encoding(self.encoding, "it ends before its end")


def _decoder(header: str | None) -> _Decoder | None:
    encoding = (header or "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Decoder(encoding)
    raise Rejection(
        415,
        f"The router cannot decode a request body with `Content-Encoding: {encoding[:40]}`; send it "
        "uncompressed, or as gzip or deflate.",
        code="unsupported_content_encoding",
    )


async def read_body(request: ClientRequest, limits: BodyLimits, held: Held) -> bytes:
    """The decoded body, within `limits`, its size held in `held`. Raises `Rejection`:
    413 too large, 400 not decodable, 415 an unknown encoding, 408 too slow, 503 no budget."""
    decoder = _decoder(request.headers.get("Content-Encoding"))
    declared = request.content_length
    if declared is not None and decoder is None:
        if declared > limits.max_bytes:
            raise too_large(limits.max_bytes)
        held.grow(declared)  # refused before a byte is read when the budget has no room
    out = bytearray()
    content = request.content
    try:
        if decoder is None:
            # Most bodies come with their head: taken without arming the timer (a cost per request).
            _append(out, content.read_nowait(), limits, held)
        if not content.at_eof():
            async with asyncio.timeout(limits.timeout_s):
                while chunk := await content.readany():
                    if decoder is not None:
                        await decoder.feed(chunk, out, limits.max_bytes, held)
                    else:
                        _append(out, chunk, limits, held)
    except TimeoutError:
        raise Rejection(
            408,
            f"The request body did not arrive within {limits.timeout_s:g} s of its headers.",
            code="request_timeout",
        ) from None
    except web.RequestPayloadError:
        raise Rejection(400, "The request body is malformed or was cut short.", code="invalid_body") from None
    if decoder is not None:
        decoder.finish()
    return bytes(out)


def _append(out: bytearray, chunk: bytes, limits: BodyLimits, held: Held) -> None:
    out += chunk
    if len(out) > limits.max_bytes:
        raise too_large(limits.max_bytes)
    held.grow(len(out))
