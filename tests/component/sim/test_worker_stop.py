"""A worker still joining its entry has nothing to drain: SIGTERM ends it at once, so a
RoleRecreate does not wait out the grace period on it."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable

import pytest

from .conftest import HOST, SimProcess

pytestmark = pytest.mark.component

WORKER = {"WORKER_INDEX": "1", "GROUP_SIZE": "2", "ENTRY_ADDRESS": HOST}


def wait_log(sim: SimProcess, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in sim.log():
        assert time.monotonic() < deadline, f"never logged {text!r}:\n{sim.log()}"
        time.sleep(0.02)


def assert_exits_promptly_on_sigterm(worker: SimProcess) -> None:
    worker.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait_exit(timeout=5) == 0
    assert time.monotonic() - started < 1.0, worker.log()


def test_a_worker_whose_entry_is_absent_exits_promptly_on_sigterm(
    start_sim: Callable[..., SimProcess],
) -> None:
    worker = start_sim(env=WORKER)  # --join-timeout keeps its default of 600 s
    wait_log(worker, "not reachable yet")
    assert_exits_promptly_on_sigterm(worker)
    assert "stopped before reaching the entry; exiting" in worker.log()


def test_a_worker_waiting_for_its_welcome_exits_promptly_on_sigterm(
    start_sim: Callable[..., SimProcess],
) -> None:
    with socket.create_server((HOST, 0)) as silent_entry:  # accepts, reads the hello, never answers
        worker = start_sim(join_port=silent_entry.getsockname()[1], env=WORKER)
        silent_entry.settimeout(10)
        connection, _ = silent_entry.accept()
        with connection:
            connection.settimeout(10)
            assert b'"hello"' in connection.recv(1024)
            assert_exits_promptly_on_sigterm(worker)
    assert "stopped before the entry welcomed worker 1; exiting" in worker.log()
