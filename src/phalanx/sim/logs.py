"""The simulator's log: every line through one handler that never writes a credential.

Clients control much of what a server logs (a malformed header line is quoted in aiohttp's
error), so each record is redacted after formatting: the values of credential headers, bearer
and basic tokens, and key-like query parameters. A record is capped in length. A client's
malformed HTTP request is one warning line that says what was wrong without quoting the bytes
(an over-long header is quoted without its name, so no redaction could tell it is a key).
"""

from __future__ import annotations

import logging
import re
import sys

from aiohttp.http_exceptions import HttpProcessingError

MAX_RECORD_CHARS = 4000
REDACTED = "[redacted]"

_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key|(?:set-)?cookie)\b([^:\n]{0,8}):[^\n]*"
)
_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)\S+")
_QUERY = re.compile(r"(?i)([?&](?:api[-_]?key|access_token|token|key|auth)=)[^&#\s'\"]*")
# A Python repr of what the client sent (bytes or str), as aiohttp's messages quote it.
_QUOTED = re.compile(r"""(?:^|(?<=\s))b?(['"])(?:(?!\1)[^\\]|\\.)*\1?""")


def redact(text: str) -> str:
    text = _HEADER.sub(rf"\1\2: {REDACTED}", text)
    text = _SCHEME.sub(rf"\1\2{REDACTED}", text)
    return _QUERY.sub(rf"\1{REDACTED}", text)


def cap(text: str, limit: int = MAX_RECORD_CHARS) -> str:
    """At most about `limit` characters: the head and the tail, where a traceback ends."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    return f"{text[:head]} [... {len(text) - head - tail} characters cut ...] {text[-tail:]}"


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return cap(redact(super().format(record)))


def _reason(message: str) -> str:
    """aiohttp's parse error on one line, the client's bytes (and the caret under them) left out."""
    return " ".join(_QUOTED.sub("[request bytes not logged]", message).replace("^", " ").split())


class ClientProtocolErrors(logging.Filter):
    """aiohttp logs a request it cannot parse as an error with a traceback; it is the client's."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "a client"
            record.msg = "bad HTTP request from %s: %s"
            record.args = (peer, _reason(str(exc.message)))
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def setup(role: str) -> None:
    """Every logger of the process (aiohttp's and asyncio's too) writes through one handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(f"%(asctime)s phalanx-sim[{role}] %(levelname)s %(message)s"))
    handler.addFilter(ClientProtocolErrors())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    sim = logging.getLogger("phalanx.sim")
    sim.handlers.clear()
    sim.setLevel(logging.INFO)
    sim.propagate = True
