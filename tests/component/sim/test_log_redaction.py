"""A credential a client sends in a request the HTTP parser refuses never reaches the log."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import pytest

from .conftest import HOST, SimProcess, wait_health

pytestmark = pytest.mark.component


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_credentials_in_a_malformed_request_never_reach_the_log(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--zero-latency")
    wait_health(sim.port, 200)
    header = b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-SECRET\x01TAIL\r\n\r\n"
    assert raw_request(sim.port, header).startswith(b"HTTP/1.0 400")
    target = b"GET /v1/models?api_key=SECRET\x01 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert raw_request(sim.port, target).startswith(b"HTTP/1.0 400")
    too_long = b"GET /health HTTP/1.1\r\nHost: x\r\nX-API-Key: SECRET" + b"k" * 9000 + b"\r\n\r\n"
    assert raw_request(sim.port, too_long).startswith(b"HTTP/1.0 400")
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.wait_exit(timeout=5) == 0
    log = sim.log()
    assert "SECRET" not in log, log
    assert "bad HTTP request from 127.0.0.1: Invalid header value char: [request bytes not logged]" in log
    assert "Got more than 8190 bytes when reading: [request bytes not logged]" in log
    assert "Traceback" not in log
