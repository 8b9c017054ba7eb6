"""The simulator's log never writes a credential, whatever a client puts in a request."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, InvalidHeader, LineTooLong

from phalanx.sim.logs import MAX_RECORD_CHARS, REDACTED, ClientProtocolErrors, RedactingFormatter, cap, redact


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("b'Authorization: Bearer sk-abc\\x01def'", "sk-abc"),
        ("authorization:Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("Proxy-Authorization: Negotiate abc123", "abc123"),
        ("X-API-Key: k-123", "k-123"),
        ("api-key: az-456", "az-456"),
        ("Cookie: session=s3cr3t", "s3cr3t"),
        ("b'Authorization\\x01: Bearer t0k3n'", "t0k3n"),
        ("token in words: bearer t0k3n", "t0k3n"),
        ("GET /v1/models?api_key=q-789&x=1 HTTP/1.1", "q-789"),
        ("GET /v1/models?access_token=q-789 HTTP/1.1", "q-789"),
    ],
)
def test_credentials_are_redacted(line: str, secret: str) -> None:
    out = redact(line)
    assert secret not in out
    assert REDACTED in out


def test_ordinary_lines_are_left_alone() -> None:
    for line in (
        "max_tokens must be an integer, got 'x'",
        "prompt token ids must be integers in [0, 32000), got -1",
        "worker 1 joined from 127.0.0.1:5000 (1/1)",
    ):
        assert redact(line) == line


def test_a_long_record_keeps_its_head_and_tail() -> None:
    text = "head " + "x" * 10_000 + " tail"
    out = cap(text)
    assert len(out) < MAX_RECORD_CHARS + 60
    assert out.startswith("head ") and out.endswith(" tail")
    assert "characters cut" in out
    assert cap("short") == "short"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    handler.addFilter(ClientProtocolErrors())
    logger = logging.getLogger("phalanx.test.sim-logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            BadHttpMessage("Invalid header value char:\n\n  b'Authorization: Bearer sk-SECRET\\x01'\n     ^"),
            "Invalid header value char: [request bytes not logged]",
        ),
        (
            LineTooLong(b"SECRET" + b"a" * 100, 8190),  # quoted without its header name
            "Got more than 8190 bytes when reading: [request bytes not logged].",
        ),
        (InvalidHeader("X-Key: SECRET"), "Invalid HTTP header: [request bytes not logged]"),
        (BadStatusLine("GET /?key=SECRET"), "Bad status line [request bytes not logged]"),
        (BadHttpMessage("Content-Length can't be present"), "Content-Length can't be present"),
    ],
)
def test_a_clients_bad_http_request_is_one_warning_line_that_quotes_none_of_it(
    captured: tuple[logging.Logger, io.StringIO], error: Exception, reason: str
) -> None:
    logger, stream = captured
    try:
        raise error
    except type(error) as exc:
        logger.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    assert stream.getvalue() == f"WARNING bad HTTP request from 127.0.0.1: {reason}\n"


def test_a_traceback_is_redacted_too(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError("header was Authorization: Bearer sk-zzz")
    except ValueError:
        logger.exception("unhandled error")
    out = stream.getvalue()
    assert "Traceback" in out and "sk-zzz" not in out
