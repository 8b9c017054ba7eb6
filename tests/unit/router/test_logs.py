"""Failures are logged by kind and place, never by their text (which may quote the request)."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

from phalanx.router.logs import failure, server_logger


def test_failure_names_the_type_and_the_line_not_the_message() -> None:
    try:
        {"k": 1}["sk-secret-key"]
    except KeyError as exc:
        said = failure(exc)
    assert said.startswith("KeyError at test_logs.py:")
    assert "sk-secret" not in said
    assert failure(ValueError("sk-secret-key")) == "ValueError"  # never raised: no traceback


def test_a_malformed_request_is_one_warning_without_its_bytes() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    server_logger.addHandler(handler)
    try:
        bad = BadHttpMessage("Invalid header value char: b'Authorization: Bearer sk-secret\\x01'")
        server_logger.exception("Error handling request from %s", "127.0.0.1", exc_info=bad)
        server_logger.error("something else", exc_info=ValueError("kept"))
    finally:
        server_logger.removeHandler(handler)
    malformed, other = records
    assert malformed.levelno == logging.WARNING
    assert malformed.getMessage() == (
        "Error handling request from 127.0.0.1: malformed request (BadHttpMessage, 400)"
    )
    assert malformed.exc_info is None
    assert other.levelno == logging.ERROR and other.exc_info is not None  # router bugs keep theirs
