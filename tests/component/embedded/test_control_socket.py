"""`phalanx up`'s control socket on a shared host: private modes, same user only, names for logs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import select
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from phalanx.cli import app
from phalanx.embedded.client import ControlError, _call
from phalanx.embedded.daemon import Daemon, UpOptions
from phalanx.embedded.up import _run
from phalanx.runtimes.local.watchdog import RestartPolicy
from tests.component.embedded.harness import free_port, quickstart, running_up
from tests.component.runtimes.helpers import umask

pytestmark = pytest.mark.component

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can run a process as another user")


@pytest.fixture
def umask_000() -> Iterator[None]:
    with umask(0):
        yield


def options(state_dir: Path, **changes: Any) -> UpOptions:
    return UpOptions(state_dir=state_dir, port=free_port(), drain_timeout=0.5, **changes)


def as_nobody(work: Callable[[], dict[str, Any]], timeout: float = 20.0) -> dict[str, Any]:
    """Runs `work` in a forked child that has become uid/gid 65534; returns what it returned."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = work()
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(read_end)
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert data, "the child running as nobody did not answer in time"
    return json.loads(data)  # type: ignore[no-any-return]


def raw_request(path: Path, method: str, target: str, body: bytes = b"") -> dict[str, Any]:
    """One HTTP request over the Unix socket, with nothing but the standard library."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return {"connect": type(exc).__name__}
        head = f"{method} {target} HTTP/1.1\r\nHost: phalanx\r\nConnection: close\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return {"status": int(status_line.split()[1]), "body": rest.partition(b"\r\n\r\n")[2].decode()}


def cli(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(app, list(args), env=env)
    return {"code": result.exit_code, "output": result.output, "exception": repr(result.exception)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def test_with_umask_000_the_directory_and_socket_are_private(tmp_path: Path, umask_000: None) -> None:
    daemon = Daemon(options(tmp_path / "state"))
    try:
        await daemon.start([])
        assert mode(tmp_path / "state") == 0o700
        assert mode(daemon.socket_path) == 0o600
        assert stat.S_ISSOCK(daemon.socket_path.lstat().st_mode)
        payload = await _call(daemon.options.state_dir, "GET", "/v1/status")
        assert payload["pid"] == os.getpid()  # the same user is served
    finally:
        await daemon.stop()


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A work directory other users may pass through (pytest's own tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="phalanx-peer-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@as_root
def test_another_user_cannot_control_up(reachable_dir: Path) -> None:
    spec = quickstart(**{"spec.replicas": 0})
    with running_up(reachable_dir, spec) as up:
        up.wait_for(lambda payload: bool(payload["servings"]), "up answering")
        sock = up.state_dir / "control.sock"
        # The directory is 0700: another user cannot even reach the socket, and is told so.
        assert as_nobody(lambda: raw_request(sock, "GET", "/v1/status")) == {"connect": "PermissionError"}
        refused = as_nobody(lambda: cli("status", env={"PHALANX_STATE_DIR": str(up.state_dir)}))
        assert refused["code"] == 1, refused
        assert "permission denied; only the user who started" in " ".join(refused["output"].split())
        assert "Traceback" not in refused["output"]

        # Reached anyway (modes loosened, as umask 000 used to leave them): the kernel's peer
        # credentials still refuse every request, apply included.
        up.state_dir.chmod(0o711)
        sock.chmod(0o666)
        status = as_nobody(lambda: raw_request(sock, "GET", "/v1/status"))
        assert status["status"] == 403, status
        assert f"uid {NOBODY} may not control" in json.loads(status["body"])["error"]["message"]
        spec_text = json.dumps({"text": "kind: ModelServing", "source": "x"}).encode()
        applied = as_nobody(lambda: raw_request(sock, "POST", "/v1/apply", spec_text))
        assert applied["status"] == 403, applied
        assert up.phalanx("status").returncode == 0  # its own user still is served


@as_root
def test_a_client_sends_nothing_to_another_users_socket(tmp_path: Path) -> None:
    """A socket planted by another user (their `up`) must not receive our spec."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(quickstart()))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(state / "control.sock"))
        server.listen()
        server.setblocking(False)
        os.chown(state / "control.sock", NOBODY, NOBODY)
        result = CliRunner().invoke(app, ["apply", "-f", str(spec), "--state-dir", str(state)])
        assert result.exit_code == 1, result.output
        text = " ".join(result.output.split())
        assert f"belongs to uid {NOBODY}, not to you" in text and "nothing was sent" in text
        with pytest.raises(BlockingIOError):
            server.accept()  # no connection was made


async def test_log_requests_must_name_a_pod_and_stay_in_the_state_dir(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_text("not yours\n")
    daemon = Daemon(options(tmp_path / "state"))
    try:
        await daemon.start([])
        cases = [
            ({"pod": "../../outside", "container": "secret"}, "pod"),
            ({"pod": "p", "container": "../../../outside/secret"}, "container"),
            ({"pod": "x", "namespace": "../outside"}, "namespace"),
            ({"pod": "../../outside", "container": "secret", "namespace": "a_b"}, "namespace"),
        ]
        for query, field in cases:
            with pytest.raises(ControlError) as refused:
                await _call(daemon.options.state_dir, "GET", "/v1/logs?" + _query(query))
            assert refused.value.status == 400, refused.value
            assert refused.value.body["error"]["param"] == field
            assert "DNS-1123" in str(refused.value)
            assert "not yours" not in str(refused.value.body)
    finally:
        await daemon.stop()


def _query(values: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


def test_up_refuses_a_planted_state_dir_with_the_fix(tmp_path: Path) -> None:
    planted = tmp_path / "state"
    planted.mkdir()
    planted.chmod(0o777)
    (planted / "control.sock").symlink_to(tmp_path / "elsewhere")
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(quickstart(**{"spec.replicas": 0})))
    result = CliRunner().invoke(
        app, ["up", "-f", str(spec), "--port", "0", "--gpus", "0", "--state-dir", str(planted)]
    )
    assert result.exit_code == 1, result.output
    assert f"{planted} has mode 0777" in result.output
    assert "chmod 700" in result.output and "--state-dir" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in planted.iterdir()) == ["control.sock"]  # nothing written, nothing removed


async def test_up_stops_with_an_error_when_its_reaper_is_lost(tmp_path: Path) -> None:
    # No restart allowed: the first death of the reaper is its loss.
    daemon = Daemon(options(tmp_path / "state", reaper_policy=RestartPolicy(check_every=0.05, limit=0)))
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    running = asyncio.create_task(_run(daemon, [], console))
    try:
        deadline = time.monotonic() + 10
        while (daemon.runtime is None or daemon.runtime.reaper_pid is None) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert daemon.runtime is not None and daemon.runtime.reaper_pid is not None
        os.kill(daemon.runtime.reaper_pid, signal.SIGKILL)
        code = await asyncio.wait_for(running, 10)
    finally:
        if not running.done():
            running.cancel()
            await daemon.stop()
    assert code == 1
    text = out.getvalue()
    assert "error:" in text and "was killed by SIGKILL" in text and "pods are stopped" in text
    assert not daemon.socket_path.exists()
