"""What the router logs about failures: the kind and the place, never the request's content.

Exception messages can quote what a client sent (a header line with a key, a piece of the body),
so failures are logged by exception type and the line that raised, not by their text.
"""

from __future__ import annotations

import logging
import traceback

from aiohttp.http_exceptions import HttpProcessingError


def failure(exc: BaseException) -> str:
    """`TypeName at file.py:123`: where the innermost frame of the traceback is."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse at ERROR with a traceback that quotes the offending
    line (an `Authorization` header, say). A malformed request is the client's error: one warning
    line with the status, without the traceback or the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: malformed request ({type(exc).__name__}, {exc.code})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


# The server side of the router's aiohttp app logs here instead of `aiohttp.server`.
server_logger = logging.getLogger("phalanx.router.http")
server_logger.addFilter(_MalformedRequests())
