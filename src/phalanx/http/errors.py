"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}` with the right status.

vLLM 0.33 answers errors in this shape, and the official `openai` client turns it into typed
exceptions (`BadRequestError`, `NotFoundError`, ...), so every HTTP surface of Phalanx uses it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

# OpenAI's `type` for each status it documents; anything else is a server error.
_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "TimeoutError",
    409: "ConflictError",
    413: "BadRequestError",
    415: "BadRequestError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    fallback = "InternalServerError" if status < 503 else "ServiceUnavailableError"
    error_type = _ERROR_TYPES.get(status, fallback)
    return {
        "error": {
            "message": message,
            "type": error_type,
            "param": param,
            "code": code if code is not None else status,
        }
    }


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        reason=HTTPStatus(status).phrase,
        text=json.dumps(error_body(status, message, param=param, code=code)),
        content_type="application/json",
        headers=headers,
    )


def sse_error_event(status: int, message: str) -> bytes:
    """The event vLLM sends when a stream fails after it started; `[DONE]` must follow it."""
    return b"data: " + json.dumps(error_body(status, message)).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(log: logging.Logger, unexpected: Callable[[Exception], str]) -> Middleware:
    """A middleware answering every failure in the JSON shape above, never with aiohttp's HTML page or
    a traceback: HTTP errors keep their status and reason; anything else is logged with its traceback
    and answered 500 with `unexpected(exc)`."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = exc.reason if exc.status != 404 else f"Not Found: {request.method} {request.path}"
            allow = exc.headers.get("Allow")
            return error_response(exc.status, message, headers={"Allow": allow} if allow else None)
        except Exception as exc:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, unexpected(exc))

    return errors


def middleware(handler: Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]) -> Middleware:
    """`handler` (a bound method) marked as an aiohttp new-style middleware. The mark is an attribute,
    which a method compiled with mypyc cannot take, so it goes on a partial of the method."""
    return web.middleware(functools.partial(handler))
