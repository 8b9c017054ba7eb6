"""Multi-node groups, rank failure and graceful shutdown, with real processes on loopback."""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from .conftest import FAST, HOST, SimProcess, get, wait_health

pytestmark = pytest.mark.component


@contextmanager
def open_stream(port: int, max_tokens: int) -> Iterator[http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        body = {"model": "tiny", "prompt": "stream please", "max_tokens": max_tokens, "stream": True}
        conn.request(
            "POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        assert response.status == 200
        try:
            yield response
        finally:
            response.close()
    finally:
        conn.close()


def read_event(response: http.client.HTTPResponse) -> Any:
    line = response.readline()
    assert line.startswith(b"data: "), line
    assert response.readline() == b"\n"
    payload = line[len(b"data: ") :].strip()
    return "[DONE]" if payload == b"[DONE]" else json.loads(payload)


def read_all(response: http.client.HTTPResponse) -> list[Any]:
    events: list[Any] = []
    while not events or events[-1] != "[DONE]":
        events.append(read_event(response))
    return events


def post_status(port: int, body: dict[str, Any]) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(
            "POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def group(start_sim: Callable[..., SimProcess], *flags: str) -> tuple[SimProcess, SimProcess]:
    entry = start_sim(*FAST, *flags, env={"WORKER_INDEX": "0", "GROUP_SIZE": "2"})
    wait_health(entry.port, 503)
    worker = start_sim(
        *FAST,
        *flags,
        "--join-timeout",
        "10",
        join_port=entry.join_port,
        env={"WORKER_INDEX": "1", "GROUP_SIZE": "2", "ENTRY_ADDRESS": HOST},
    )
    return entry, worker


def test_group_ready_only_after_worker_joins(start_sim: Callable[..., SimProcess]) -> None:
    entry = start_sim(*FAST, env={"WORKER_INDEX": "0", "GROUP_SIZE": "2"})
    wait_health(entry.port, 503)
    time.sleep(0.3)
    assert get(entry.port, "/health")[0] == 503
    assert post_status(entry.port, {"prompt": "x", "max_tokens": 1}) == 503
    start_sim(
        *FAST, join_port=entry.join_port, env={"WORKER_INDEX": "1", "GROUP_SIZE": "2", "ENTRY_ADDRESS": HOST}
    )
    wait_health(entry.port, 200)
    assert post_status(entry.port, {"prompt": "x", "max_tokens": 3}) == 200


def test_killed_worker_fails_streams_and_the_entry(start_sim: Callable[..., SimProcess]) -> None:
    entry, worker = group(start_sim)
    wait_health(entry.port, 200)
    with open_stream(entry.port, max_tokens=400) as response:
        first = read_event(response)
        assert first["choices"][0]["text"]
        worker.proc.kill()
        killed = time.monotonic()
        events = read_all(response)
        assert events[-1] == "[DONE]"
        assert "error" in events[-2] and events[-2]["error"]["code"] == 503
        assert entry.wait_exit(timeout=5) != 0
        assert time.monotonic() - killed < 2.5
        assert "rank failure: worker 1 disconnected" in entry.log()


def test_entry_sigterm_drains_in_flight_request(start_sim: Callable[..., SimProcess]) -> None:
    entry = start_sim(*FAST)
    wait_health(entry.port, 200)
    with open_stream(entry.port, max_tokens=150) as response:  # ~0.3 s of decoding
        read_event(response)
        entry.proc.send_signal(signal.SIGTERM)
        wait_health(entry.port, 503, timeout=2)
        assert post_status(entry.port, {"prompt": "late", "max_tokens": 1}) == 503
        events = read_all(response)
        assert events[-2]["choices"][0]["finish_reason"] == "length"
        assert entry.wait_exit(timeout=5) == 0


def test_deleting_a_whole_group_finishes_its_requests(start_sim: Callable[..., SimProcess]) -> None:
    entry, worker = group(start_sim)
    wait_health(entry.port, 200)
    with open_stream(entry.port, max_tokens=150) as response:
        read_event(response)
        worker.proc.send_signal(signal.SIGTERM)
        entry.proc.send_signal(signal.SIGTERM)
        events = read_all(response)
        assert events[-2]["choices"][0]["finish_reason"] == "length"
        assert entry.wait_exit(timeout=5) == 0
        assert worker.wait_exit(timeout=5) == 0


def test_worker_exits_nonzero_when_the_entry_dies(start_sim: Callable[..., SimProcess]) -> None:
    entry, worker = group(start_sim)
    wait_health(entry.port, 200)
    entry.proc.kill()
    assert worker.wait_exit(timeout=5) != 0


def test_drain_timeout_fails_what_is_left(start_sim: Callable[..., SimProcess]) -> None:
    entry = start_sim(*FAST, "--drain-timeout", "0.2")
    wait_health(entry.port, 200)
    with open_stream(entry.port, max_tokens=500) as response:  # ~1 s: outlives the drain timeout
        read_event(response)
        entry.proc.send_signal(signal.SIGTERM)
        events = read_all(response)
        assert "error" in events[-2]
        assert entry.wait_exit(timeout=5) == 0


def test_startup_delay(start_sim: Callable[..., SimProcess]) -> None:
    entry = start_sim(*FAST, "--startup-delay", "0.8")
    wait_health(entry.port, 503)
    wait_health(entry.port, 200, timeout=5)


def test_worker_gives_up_when_no_entry(start_sim: Callable[..., SimProcess]) -> None:
    worker = start_sim(
        "--join-timeout", "0.5", env={"WORKER_INDEX": "1", "GROUP_SIZE": "2", "ENTRY_ADDRESS": HOST}
    )
    assert worker.wait_exit(timeout=5) == 1
    assert "could not join" in worker.log()


def test_a_client_hanging_up_aborts_its_request(start_sim: Callable[..., SimProcess]) -> None:
    entry = start_sim("--inter-token-latency", "0.05")
    wait_health(entry.port, 200)
    connection = http.client.HTTPConnection(HOST, entry.port, timeout=5)
    body = {"model": "tiny", "prompt": "long", "max_tokens": 400}  # ~20 s of decoding
    connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    deadline = time.monotonic() + 5
    while json.loads(get(entry.port, "/load")[1])["server_load"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    connection.close()  # gone without reading the answer
    while json.loads(get(entry.port, "/load")[1])["server_load"] != 0:
        assert time.monotonic() < deadline + 5, "the abandoned request kept running"
        time.sleep(0.05)
