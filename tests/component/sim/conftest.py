"""Start `python -m phalanx sim` processes on loopback and always reap them."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

HOST = "127.0.0.1"
FAST = [
    "--prefill-overhead",
    "0.005",
    "--prefill-time-per-token",
    "0.00001",
    "--inter-token-latency",
    "0.002",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SimProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int
    join_port: int

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"pid {self.proc.pid} still running after {timeout} s:\n{self.log()}"
            ) from None


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_health(port: int, status: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            last = get(port, "/health", timeout=1.0)[0]
            if last == status:
                return
        time.sleep(0.05)
    raise AssertionError(f"/health on {port} never returned {status} (last: {last})")


async def metric(session: aiohttp.ClientSession, sim: SimProcess, name: str) -> float:
    """One sample of `/metrics` (the first series of `name`)."""
    async with session.get(f"{sim.base_url}/metrics") as r:
        text = await r.text()
    found = re.search(rf"^{re.escape(name)}{{[^}}]*}} (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


@pytest.fixture
def start_sim() -> Iterator[Callable[..., SimProcess]]:
    """A factory: start_sim(*flags, env={...}, port=..., join_port=...) -> SimProcess; all are killed."""
    started: list[SimProcess] = []
    with tempfile.TemporaryDirectory() as tmp:

        def start(
            *flags: str,
            env: dict[str, str] | None = None,
            port: int | None = None,
            join_port: int | None = None,
        ) -> SimProcess:
            port = port or free_port()
            join_port = join_port or free_port()
            log_path = Path(tmp) / f"sim-{len(started)}.log"
            args = [
                sys.executable, "-m", "phalanx", "sim", "--served-model-name", "tiny", "--host", HOST,
                "--port", str(port), "--join-port", str(join_port), "--max-model-len", "512", *flags,
            ]  # fmt: skip
            with log_path.open("wb") as log_file:
                proc = subprocess.Popen(
                    args, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
                )
            sim = SimProcess(proc, log_path, port, join_port)
            started.append(sim)
            return sim

        try:
            yield start
        finally:
            for sim in started:
                if sim.proc.poll() is None:
                    sim.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    sim.proc.wait(timeout=10)
