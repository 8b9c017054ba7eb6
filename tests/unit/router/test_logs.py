"""Failures are logged by kind and place, never by their text (which may quote the request)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from types import SimpleNamespace

import pytest
from aiohttp.http_exceptions import BadHttpMessage

from phalanx.router import logs
from phalanx.router.logs import AccessLog, access_line, failure, server_logger


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


# -- the access log's direct path -----------------------------------------------------------

BASIC_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # `phalanx router`'s


def stream_logger(name: str, fmt: str = BASIC_FORMAT) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, stream, handler


def as_logging_writes(handler: logging.Handler, name: str, message: str, created: float) -> str:
    record = logging.LogRecord(name, logging.INFO, "", 0, message, None, None)
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0
    return handler.format(record) + "\n"


@pytest.mark.pure_python  # the clock is patched into the module
async def test_access_lines_are_what_logging_would_write_and_leave_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log, stream, handler = stream_logger("test.access.direct")
    access = AccessLog(log, flush_interval_s=60)
    access.open()
    stamps = iter([1_700_000_000.004, 1_700_000_000.987, 1_700_000_001.5])
    clock = SimpleNamespace(time=lambda: next(stamps), strftime=time.strftime, localtime=time.localtime)
    monkeypatch.setattr(logs, "time", clock)
    for n in range(3):
        access.write(f'{{"n":{n},"path":"/v1/100%"}}')
    assert stream.getvalue() == ""  # kept, not written per request
    access.close()
    expected = "".join(
        as_logging_writes(handler, log.name, f'{{"n":{n},"path":"/v1/100%"}}', t)
        for n, t in enumerate([1_700_000_000.004, 1_700_000_000.987, 1_700_000_001.5])
    )
    assert stream.getvalue() == expected


async def test_kept_lines_go_out_within_the_interval_and_past_the_bound() -> None:
    log, stream, _ = stream_logger("test.access.timer")
    access = AccessLog(log, flush_interval_s=0.02, max_lines=3)
    access.open()
    access.write("one")
    await asyncio.sleep(0.1)
    assert stream.getvalue().endswith("test.access.timer: one\n")
    for word in ("a", "b", "c"):
        access.write(word)
    assert stream.getvalue().count("\n") == 4  # the third line filled the bound: written at once
    access.close()


@pytest.mark.parametrize(
    "change",
    ["filter", "second handler", "other field", "own formatter"],
)
def test_any_other_set_up_gets_a_record_per_line(change: str) -> None:
    log, stream, handler = stream_logger(f"test.access.{change.replace(' ', '_')}")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    if change == "filter":
        log.addFilter(lambda record: True)
    elif change == "second handler":
        log.addHandler(Keep())
    elif change == "other field":
        handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(message)s"))
    else:
        handler.setFormatter(type("Own", (logging.Formatter,), {})(BASIC_FORMAT))
    access = AccessLog(log)
    access.open()
    access.write("line")
    assert stream.getvalue().endswith(" line\n")  # written at once, by logging
    access.close()
    assert stream.getvalue().count("line") == 1


def test_a_logger_off_for_info_gets_nothing() -> None:
    log, stream, _ = stream_logger("test.access.off")
    log.setLevel(logging.WARNING)
    access = AccessLog(log)
    access.open()
    access.write("line")
    access.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("request_id", "path", "model", "error", "duration_ms"),
    [
        ("req-42", "/v1/completions", "m", "", 1.5),
        ('q"uo\\te', "/v1/chat/completions", "modèle/日本", "stream_broken", 0.0),
        ("\x00ctl\n\t\x7f", "/v1/embeddings", "", "client_gone", 12345.67),
        ("\U0001f600", "/p", "m", "", 1e-05),
    ],
)
def test_access_line_is_what_json_dumps_writes(
    request_id: str, path: str, model: str, error: str, duration_ms: float
) -> None:
    record: dict[str, object] = {
        "request_id": request_id,
        "method": "POST",
        "path": path,
        "model": model,
        "endpoint": "ep-0",
        "status": 499,
        "attempts": 2,
        "duration_ms": duration_ms,
    }
    if error:
        record["error"] = error
    line = access_line(request_id, "POST", path, model, "ep-0", 499, 2, duration_ms, error)
    assert line == json.dumps(record, separators=(",", ":"))
    assert json.loads(line) == record
