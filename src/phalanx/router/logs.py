"""What the router logs about failures: the kind and the place, never the request's content.

Exception messages can quote what a client sent (a header line with a key, a piece of the body),
so failures are logged by exception type and the line that raised, not by their text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

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


def access_line(
    request_id: str,
    method: str,
    path: str,
    model: str,
    endpoint: str,
    status: int,
    attempts: int,
    duration_ms: float,
    error: str = "",
) -> str:
    """The access log's JSON line, as `json.dumps(record, separators=(",", ":"))` writes it, built
    without the encoder's general walk (a measured share of the router's time per request)."""
    line = (
        f'{{"request_id":{_json_string(request_id)},"method":{_json_string(method)},'
        f'"path":{_json_string(path)},"model":{_json_string(model)},"endpoint":{_json_string(endpoint)},'
        f'"status":{int(status)},"attempts":{int(attempts)},"duration_ms":{float(duration_ms)!r}'
    )
    return f'{line},"error":{_json_string(error)}}}' if error else line + "}"


class AccessLog:
    """The access log's lines, written without a `logging.LogRecord` per request where that gives the
    same output.

    When the records of `logger` would reach exactly one plain `StreamHandler` with a plain `%`-style
    `Formatter` and no filters (what `logging.basicConfig` sets up, as `phalanx router` does), a line
    is formatted here, as that formatter would, and kept; the kept lines go out in one write every
    `flush_interval_s`, past `max_lines`, and at `close()`. A crash loses at most the lines of the
    last interval. Any other set-up (a handler of one's own, a filter, a test's log capture) gets an
    ordinary record per line, as it is written. A logger disabled for INFO gets nothing.
    """

    def __init__(self, logger: logging.Logger, flush_interval_s: float = 0.2, max_lines: int = 1024) -> None:
        self._logger = logger
        self._interval = flush_interval_s
        self._max_lines = max_lines
        self._lines: list[str] = []
        self._handler: logging.StreamHandler[Any] | None = None
        self._template = ""
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""

    def open(self) -> None:
        """Look at the logging set-up once (again after each flush: it may change)."""
        self._handler, self._template = _direct_output(self._logger)

    def write(self, message: str) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        if self._handler is None:
            logger.info(message)
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        self._lines.append(
            self._template
            % {"asctime": f"{self._stamp},{int((now - second) * 1000):03d}", "message": message}
        )
        if len(self._lines) >= self._max_lines:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._lines = self._lines, []
        handler = self._handler
        if lines and handler is not None:
            terminator = handler.terminator
            handler.acquire()
            try:
                handler.stream.write(terminator.join(lines) + terminator)
                handler.flush()
            except (OSError, ValueError):  # a closed or broken stream: as logging would, go on
                pass
            finally:
                handler.release()
        self.open()

    def close(self) -> None:
        """Write what is kept; a clean stop loses no line."""
        self.flush()
        self._handler = None


# The record fields a directly formatted line can fill in: the rest need a real record.
_DIRECT_FIELDS = {"asctime", "message", "levelname", "name"}


def _direct_output(logger: logging.Logger) -> tuple[logging.StreamHandler[Any] | None, str]:
    """The one plain stream handler `logger`'s INFO records reach, and its format with the level and
    the logger's name filled in; (None, "") when a line cannot be written as that handler would."""
    if logger.filters or logger.disabled:
        return None, ""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    if len(handlers) != 1 or type(handlers[0]) is not logging.StreamHandler:
        return None, ""
    handler = handlers[0]
    formatter = handler.formatter
    if (
        handler.filters
        or handler.level > logging.INFO
        or formatter is None
        or type(formatter) is not logging.Formatter
    ):
        return None, ""
    style = formatter._style
    if (
        type(style) is not logging.PercentStyle
        or formatter.datefmt is not None
        or formatter.converter is not time.localtime
    ):
        return None, ""
    if formatter.default_time_format != "%Y-%m-%d %H:%M:%S" or formatter.default_msec_format != "%s,%03d":
        return None, ""
    fmt = style._fmt
    fields = set(re.findall(r"%\((\w+)\)s", fmt))
    if not fields <= _DIRECT_FIELDS or re.search(r"%\(\w+\)[^s]", fmt):
        return None, ""
    template = fmt.replace("%(levelname)s", "INFO").replace("%(name)s", logger.name.replace("%", "%%"))
    return handler, template
