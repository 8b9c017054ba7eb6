"""A request turned away before it reaches an endpoint, carrying the OpenAI-style answer it gets.

Admission, API keys and rate limits all reject by raising `Rejection`; the server turns any of them
into a response with one `except Rejection as r: return r.response()`, so the status, the `code`
and headers such as `Retry-After` are decided where the rejection is, not re-derived by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from phalanx.http.errors import error_body, error_response


class Rejection(Exception):
    # Not a dataclass: contextlib assigns `__traceback__` on exceptions passing through
    # `asynccontextmanager`, which a frozen dataclass would refuse.
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)

    def response(self) -> web.Response:
        return error_response(
            self.status, self.message, param=self.param, code=self.code, headers=self.headers or None
        )

    def __repr__(self) -> str:
        return f"Rejection({self.status}, {self.message!r}, code={self.code!r})"
