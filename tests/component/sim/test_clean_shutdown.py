"""A clean drain looks clean: the logs of a group stopped by SIGTERM hold no traceback, and every
line reads as words (no Python reprs), as a user reading `phalanx logs` after a scale-down sees them."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable

import pytest

from .conftest import FAST, HOST, SimProcess, wait_health
from .test_lifecycle import group, post_status

pytestmark = pytest.mark.component

# What a log line must never show after a clean stop.
UNCLEAN = ("Traceback", "CancelledError", "Exception in callback", "Task was destroyed", "ERROR")


def assert_clean(sim: SimProcess) -> None:
    log = sim.log()
    for marker in UNCLEAN:
        assert marker not in log, f"{marker!r} in the log of a clean stop:\n{log}"
    assert not re.search(r"\('[\d.]+', \d+\)", log), f"a Python tuple in the log:\n{log}"


def test_entry_of_a_group_drained_by_sigterm_logs_no_traceback(start_sim: Callable[..., SimProcess]) -> None:
    entry, worker = group(start_sim)
    wait_health(entry.port, 200)
    assert post_status(entry.port, {"model": "tiny", "prompt": "hello", "max_tokens": 8}) == 200
    entry.proc.send_signal(signal.SIGTERM)
    assert entry.wait_exit(timeout=5) == 0
    assert worker.wait_exit(timeout=5) == 0
    assert "drained; exiting" in entry.log()
    assert "entry said goodbye; exiting" in worker.log()
    assert re.search(rf"worker 1 joined from {re.escape(HOST)}:\d+ \(1/1\)", entry.log()), entry.log()
    assert_clean(entry)
    assert_clean(worker)


def test_a_group_stopped_worker_first_then_entry_logs_no_traceback(
    start_sim: Callable[..., SimProcess],
) -> None:
    """The local runtime and a kubelet signal every pod of a role instance at once; in any order."""
    entry, worker = group(start_sim)
    wait_health(entry.port, 200)
    worker.proc.send_signal(signal.SIGTERM)
    entry.proc.send_signal(signal.SIGTERM)
    assert entry.wait_exit(timeout=5) == 0
    assert worker.wait_exit(timeout=5) == 0
    assert_clean(entry)
    assert_clean(worker)


def test_a_single_pod_engine_drained_by_sigterm_logs_no_traceback(
    start_sim: Callable[..., SimProcess],
) -> None:
    entry = start_sim(*FAST)
    wait_health(entry.port, 200)
    entry.proc.send_signal(signal.SIGTERM)
    assert entry.wait_exit(timeout=5) == 0
    assert "drained; exiting" in entry.log()
    assert_clean(entry)


def test_a_worker_waiting_for_its_entry_says_why_in_words(start_sim: Callable[..., SimProcess]) -> None:
    worker = start_sim(
        "--join-timeout", "0.5", env={"WORKER_INDEX": "1", "GROUP_SIZE": "2", "ENTRY_ADDRESS": HOST}
    )
    assert worker.wait_exit(timeout=5) == 1
    log = worker.log()
    assert f"entry {HOST}:{worker.join_port} not reachable yet (Connection refused); retrying" in log
    assert f"could not join {HOST}:{worker.join_port} within 0.5 s: Connection refused" in log
    assert not re.search(r"\('[\d.]+', \d+\)", log), f"a Python tuple in the log:\n{log}"
