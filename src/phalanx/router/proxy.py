"""Relaying one upstream response to the client, chunk by chunk, after the routing decision is made."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping

from phalanx.http.errors import SSE_DONE, sse_error_event
from phalanx.router.client import ClientReply, ClientRequest, new_reply
from phalanx.router.messages import client_response_headers
from phalanx.router.upstream import UpstreamError
from phalanx.router.upstream_session import UpstreamResponse

logger = logging.getLogger("phalanx.router")

# How long the response head waits for the first body bytes, so that both leave in one write (one
# wake-up of the client, not two). Engines send their head and first bytes microseconds apart; a
# first token further off than this does not keep the status from the client any longer.
HEAD_HOLD_S = 0.05


class SseFramer:
    """Passes SSE bytes through up to the last complete event and holds back a partial one.

    Holding back only an unfinished event adds no latency a client could use (it cannot parse half
    an event), and it lets the router end a broken stream with a well-formed error event. An event
    that grows past `max_pending` bytes (or a stream that never frames its events) is passed on as
    it comes: the router's memory per stream stays bounded.
    """

    def __init__(self, max_pending: int = 1 << 20) -> None:
        self._pending = b""
        self._max_pending = max_pending

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        lf = data.rfind(b"\n\n")
        crlf = data.rfind(b"\r\n\r\n")
        end = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
        if len(data) - end > self._max_pending:
            end = len(data)
        self._pending = data[end:]
        return data[:end]

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    @property
    def pending(self) -> int:
        return len(self._pending)


class Outcome(enum.Enum):
    COMPLETE = "complete"
    UPSTREAM_FAILED = "upstream_failed"
    CLIENT_GONE = "client_gone"
    # The upstream failed while the head was still held: nothing reached the client, and the
    # response was never prepared, so the request may go to another endpoint.
    NOTHING_SENT = "nothing_sent"


def is_event_stream(upstream: UpstreamResponse) -> bool:
    """An SSE body the router can read as text: framed on events, ended with an error event when
    it breaks. A compressed one is relayed as opaque bytes, like any other body."""
    return upstream.content_type == "text/event-stream" and upstream.content_encoding in ("", "identity")


async def relay(
    request: ClientRequest,
    upstream: UpstreamResponse,
    request_id: str,
    on_data: Callable[[bytes, bool], None],
    extra_headers: Mapping[str, str] | None = None,
    on_complete: Callable[[], None] | None = None,
) -> tuple[ClientReply, Outcome]:
    """Stream `upstream` to the client. Once a byte went out the request is never retried; an
    upstream that fails before its first body bytes (while the head is held) is `NOTHING_SENT`.

    `on_data(data, is_event_stream)` sees every write before it goes out (for timing metrics).
    `on_complete()` is called once, as the answer's final payload (an event stream's `[DONE]`, or
    the last bytes of any body) is handed to the client's connection: from then on the answer is
    `COMPLETE`, whatever happens to the connection while the body is ended. A client may close
    as soon as it has read `[DONE]`, before the end-of-body marker: that cancels this relay (the
    server's handler cancellation), so the caller must count the answer in `on_complete`.
    """
    response = new_reply(
        request,
        upstream.status,
        upstream.reason,  # none given: the status's own phrase
        client_response_headers(upstream.headers, request_id),
    )
    if extra_headers:
        response.headers.update(extra_headers)
    sse = is_event_stream(upstream)
    framer = SseFramer() if sse else None
    try:
        pending = await _first_bytes(upstream)
    except (UpstreamError, TimeoutError) as exc:
        logger.warning(
            "upstream %s failed before its first bytes (%s); nothing was sent to the client",
            upstream.origin,
            _label(exc),
        )
        return response, Outcome.NOTHING_SENT
    completion = _Completion(request, on_complete)
    try:
        await response.prepare(request)
        if pending is None:
            await response.write(b"")  # nothing within the hold: the head goes alone
        while True:
            if pending is None:
                try:
                    pending = await upstream.readany()
                except (UpstreamError, TimeoutError) as exc:
                    if completion.done:  # only the engine's tail after [DONE] was lost
                        await response.write_eof()
                        return response, Outcome.COMPLETE
                    return response, await _fail_stream(request, response, sse, upstream, exc)
            chunk, pending = pending, None
            data = framer.feed(chunk) if framer is not None else chunk
            if not chunk or upstream.at_eof():
                # The last bytes leave with the end-of-body marker, in one write.
                if framer is not None:
                    data += framer.flush()
                if data:
                    on_data(data, sse)
                completion.handing_over()
                await response.write_eof(data)
                return response, Outcome.COMPLETE
            if data:
                on_data(data, sse)
                if sse and _ends_with_done(data):
                    completion.handing_over()
                await response.write(data)
    except ConnectionResetError:
        # aiohttp's ClientConnectionResetError is one: the client went away while we wrote.
        return response, Outcome.COMPLETE if completion.done else Outcome.CLIENT_GONE


def _ends_with_done(data: bytes) -> bool:
    """Whether framed SSE bytes end with the `[DONE]` event, the last one an OpenAI stream sends."""
    return data.rstrip(b"\r\n").endswith(SSE_DONE.rstrip(b"\n"))


class _Completion:
    """Whether the final payload went to the client, told once to `on_complete`.

    Handed over means given to a connection that was open at that moment: aiohttp's writes pass
    their bytes to the transport before they first wait, so a write that then fails or is
    cancelled (the client closing after reading them) still delivered them.
    """

    def __init__(self, request: ClientRequest, on_complete: Callable[[], None] | None) -> None:
        self._request = request
        self._on_complete = on_complete
        self.done = False

    def handing_over(self) -> None:
        transport = self._request.transport
        if self.done or transport is None or transport.is_closing():
            return  # the write that follows raises ConnectionResetError: a hang-up
        self.done = True
        if self._on_complete is not None:
            self._on_complete()


def _label(exc: BaseException) -> str:
    return exc.label if isinstance(exc, UpstreamError) else type(exc).__name__


async def _first_bytes(content: UpstreamResponse) -> bytes | None:
    """The first body bytes if they come within `HEAD_HOLD_S`, else None (they are still to come)."""
    # Most often they came with the head: no timer to arm and cancel (a cost per request).
    ready = content.read_nowait()
    if ready or content.at_eof():
        return ready
    hold = asyncio.timeout(HEAD_HOLD_S)
    try:
        async with hold:
            return await content.readany()
    except TimeoutError:
        if hold.expired():
            return None
        raise  # the upstream read's own timeout


async def _fail_stream(
    request: ClientRequest,
    response: ClientReply,
    sse: bool,
    upstream: UpstreamResponse,
    exc: BaseException,
) -> Outcome:
    logger.warning(
        "upstream %s failed mid-stream (%s); %s",
        upstream.origin,
        _label(exc),
        "ending the client's stream with an error event" if sse else "aborting the client connection",
    )
    if sse:
        # vLLM's own convention for a stream that breaks after it started.
        await response.write(sse_error_event(502, "The upstream endpoint failed while streaming."))
        await response.write(SSE_DONE)
        await response.write_eof()
    elif request.transport is not None:
        # A truncated body must not look complete: drop the connection instead of ending it cleanly.
        request.transport.close()
    return Outcome.UPSTREAM_FAILED
