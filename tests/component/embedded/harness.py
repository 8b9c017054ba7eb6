"""Runs `phalanx up` as a real child process for component tests, and finds what it left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from phalanx.embedded.client import ControlError, NotRunningError, call
from tests.component.runtimes.helpers import MARK, marked_pids

ROOT = Path(__file__).resolve().parents[3]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free loopback port, for as long as the block runs; yields its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def quickstart(**changes: Any) -> dict[str, Any]:
    """The quickstart example, with test-speed tweaks applied by the caller."""
    data: dict[str, Any] = yaml.safe_load(QUICKSTART.read_text())
    for path, value in changes.items():
        target = data
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[keys[-1]] = value
    return data


class Up:
    def __init__(self, workdir: Path, spec: dict[str, Any] | Path, *, gpus: int = 0) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.port = free_port()
        self.mark = uuid.uuid4().hex
        self.gpus = gpus
        if isinstance(spec, Path):
            self.spec_path = spec
        else:
            self.spec_path = workdir / "spec.yaml"
            self.write_spec(spec)
        self.output = workdir / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    def write_spec(self, spec: dict[str, Any], name: str = "spec.yaml") -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump(spec))
        return path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {**os.environ, MARK: self.mark}
        command = [
            sys.executable,
            "-m",
            "phalanx",
            "up",
            "-f",
            str(self.spec_path),
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
            "--gpus",
            str(self.gpus),
        ]
        with self.output.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def phalanx(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Runs another `phalanx` command against this `up`, as a second terminal would."""
        return subprocess.run(
            [sys.executable, "-m", "phalanx", *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = call(self.state_dir, "GET", "/v1/status", timeout=10)
        return result

    def serving(self, name: str = "quickstart") -> dict[str, Any]:
        for ms in self.status()["servings"]:
            if ms["metadata"]["name"] == name:
                return ms  # type: ignore[no-any-return]
        raise AssertionError(f"no ModelServing {name}")

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"phalanx up exited ({self.process.returncode}) waiting for {what}:\n{self.log()}"
                )
            with contextlib.suppress(NotRunningError, ControlError, OSError):
                last = self.status()
                if check(last):
                    return last
            time.sleep(0.2)
        groups = [ms.get("status", {}).get("groups") for ms in last.get("servings", [])]
        raise AssertionError(f"timed out waiting for {what}; groups: {groups}\n{self.log()[-3000:]}")

    def wait_available(
        self, name: str = "quickstart", groups: int | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        def ready(payload: dict[str, Any]) -> bool:
            for ms in payload["servings"]:
                if ms["metadata"]["name"] != name:
                    continue
                status = ms.get("status") or {}
                want = ms["spec"].get("replicas", 1) if groups is None else groups
                conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
                return (
                    conditions.get("Available") == "True"
                    and conditions.get("Progressing") == "False"
                    and status.get("availableReplicas") == want
                    and status.get("replicas") == want
                )
            return False

        return self.wait_for(ready, f"{name} available", timeout)

    def pod(self, name: str) -> dict[str, Any]:
        for pod in self.status()["pods"]:
            if pod["name"] == name:
                return pod  # type: ignore[no-any-return]
        raise AssertionError(f"no pod {name}")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 45) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"phalanx up did not stop within {timeout}s:\n{self.log()[-3000:]}"
            ) from None

    def leftovers(self, wait: float = 5.0) -> list[int]:
        deadline = time.monotonic() + wait
        left = marked_pids(self.mark)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = marked_pids(self.mark)
        return left

    def kill_leftovers(self) -> None:
        for pid in marked_pids(self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def running_up(workdir: Path, spec: dict[str, Any] | Path, **options: Any) -> Iterator[Up]:
    up = Up(workdir, spec, **options)
    up.start()
    try:
        yield up
    finally:
        with contextlib.suppress(AssertionError):
            up.stop()
        up.kill_leftovers()
