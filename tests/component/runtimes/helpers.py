"""Small programs test pods run, and a check that no test process outlives its test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.runtimes.local.procs import group_alive
from phalanx.runtimes.local.runtime import LocalRuntime

PY = sys.executable
MARK = "PHALANX_LOCAL_RUNTIME_TEST"

# Listens on POD_IP:PORT for LIVE seconds, then closes the socket but keeps running.
LISTEN_THEN_HANG = """
import os, socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((os.environ["POD_IP"], int(os.environ["PORT"]))); s.listen()
print("listening", flush=True)
time.sleep(float(os.environ.get("LIVE", "0.5"))); s.close()
print("closed", flush=True)
time.sleep(300)
"""

# Ignores SIGTERM (but says so), to show the grace period ends in SIGKILL.
IGNORE_TERM = """
import signal, time
signal.signal(signal.SIGTERM, lambda *_: print("got SIGTERM", flush=True))
print("running", flush=True)
while True: time.sleep(0.05)
"""

PRINT_ENV = (
    "import os, time; print(' '.join(f'{k}={os.environ.get(k)}' for k in %r), flush=True); time.sleep(300)"
)


def pod(
    name: str,
    command: list[str],
    *,
    mark: str,
    env: dict[str, str] | None = None,
    gpus: int = 0,
    grace: int = 1,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **container: Any,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": "main",
        "image": "ignored:latest",
        "command": command,
        "env": [{"name": MARK, "value": mark}, *({"name": k, "value": v} for k, v in (env or {}).items())],
        **container,
    }
    if gpus:
        c["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"terminationGracePeriodSeconds": grace, "containers": [c]},
    }


def live_pids(read: str) -> Iterator[tuple[int, list[bytes]]]:
    """Each live process (zombies do not count) with its `/proc/PID/<read>` split at NULs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X"):
                continue
            yield int(entry.name), (entry / read).read_bytes().split(b"\0")
        except OSError:
            continue


def marked_pids(mark: str) -> list[int]:
    """Live processes whose environment carries the test's mark."""
    needle = f"{MARK}={mark}".encode()
    return [pid for pid, environ in live_pids("environ") if needle in environ]


def wait_no_marked(mark: str, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := marked_pids(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


async def until(runtime: LocalRuntime, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Waits for `check()` (sync or async) to be truthy; returns it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {check}")
        await runtime.wait_for_change(0.1)


async def get_pod(runtime: LocalRuntime, name: str) -> dict[str, Any] | None:
    pods = await runtime.list_objects("Pod", "default", {})
    return next((p for p in pods if p["metadata"]["name"] == name), None)


def condition(pod: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((pod or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return {}


def container_status(pod: dict[str, Any] | None) -> dict[str, Any]:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def reaper_pids(pgid_file: Path) -> list[int]:
    """Live reaper processes watching `pgid_file` (found by their command line)."""
    return [
        pid
        for pid, argv in live_pids("cmdline")
        if str(pgid_file).encode() in argv and any(a.endswith(b"reaper.py") for a in argv)
    ]


def wait_new_reaper(pgid_file: Path, old: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [pid for pid in reaper_pids(pgid_file) if pid != old]
        if fresh:
            return fresh[0]
        time.sleep(0.02)
    return None


def wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not group_alive(pgid)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@dataclass
class Victim:
    """A LocalRuntime with one pod in a process of its own (`reaper_victim.py`), to kill -9."""

    process: subprocess.Popen[str]
    pgid: int  # the pod's process group
    reaper: int

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@contextlib.contextmanager
def runtime_process(state_dir: Path, mark: str) -> Iterator[Victim]:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    process = subprocess.Popen(
        [PY, str(Path(__file__).with_name("reaper_victim.py")), str(state_dir), mark],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert len(line) == 2, "the runtime's process did not start its pod"
        yield Victim(process, int(line[0]), int(line[1]))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
