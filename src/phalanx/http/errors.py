"""OpenAI-style error bodies: `{"error": {"message", "type", "param", "code"}}` with the right status.

vLLM 0.33 answers errors in this shape, and the official `openai` client turns it into typed
exceptions (`BadRequestError`, `NotFoundError`, ...), so every HTTP surface of Phalanx uses it.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

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
