"""Small programs test pods run, and a check that no test process outlives its test."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def marked_pids(mark: str) -> list[int]:
    """Live processes whose environment carries the test's mark (zombies do not count)."""
    found = []
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X"):
                continue
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


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
