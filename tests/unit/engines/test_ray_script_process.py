"""The vLLM Ray launcher's shell scripts, run by a real shell with stand-in commands on PATH.

Only the commands the scripts call are stand-ins (`vllm` records its argv; `ray` and `python3` act as a
Ray cluster whose nodes have all joined); the shell, its branches and its variable expansion are real.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from phalanx.engines import RECIPES
from tests.unit.engines.test_recipes import container, inputs

SH = shutil.which("sh")
pytestmark = pytest.mark.skipif(SH is None, reason="no POSIX shell")

POD_ENV = {"POD_IP": "10.0.0.7", "ENTRY_ADDRESS": "10.0.0.5", "WORKER_INDEX": "1", "GROUP_SIZE": "2"}


def stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{SH}\n{body}\n")
    path.chmod(0o755)


def run_script(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Runs the pod's script as `sh -c` does, with nothing on PATH but `folder`."""
    assert SH is not None
    stand_in(folder, "vllm", 'for arg in "$@"; do printf "%s\\n" "$arg"; done > "$ARGV_FILE"')
    env = {**POD_ENV, "PATH": str(folder), "ARGV_FILE": str(folder / "argv")}
    command = [SH, "-c", script]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def recorded_argv(folder: Path) -> list[str]:
    return (folder / "argv").read_text().splitlines()


def expected_native(pod: str) -> list[str]:
    """The native launcher's args for the pod, as the shell expands them ($(VAR) is Kubernetes')."""
    template = getattr(RECIPES["vllm"](inputs(launcher="native")), pod)
    args: list[str] = container(template)["args"]
    values = {f"$({name})": value for name, value in POD_ENV.items()}
    return ["serve", *(values.get(arg, arg) for arg in args)]


@pytest.mark.parametrize("pod", ["entry", "worker"])
def test_without_ray_the_pod_runs_the_native_launcher(pod: str, tmp_path: Path) -> None:
    template = getattr(RECIPES["vllm"](inputs(launcher="ray")), pod)
    done = run_script(container(template)["command"][2], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no ray command in this image" in done.stderr
    assert "spec.launcher: native" in done.stderr  # names the fix
    assert recorded_argv(tmp_path) == expected_native(pod)


def test_with_ray_the_entry_waits_for_the_cluster_then_serves_on_ray(tmp_path: Path) -> None:
    calls = tmp_path / "ray-calls"
    stand_in(tmp_path, "ray", f'echo "$*" >> {calls}')
    stand_in(tmp_path, "python3", 'echo "$GROUP_SIZE"')  # every node has joined
    date = shutil.which("date")
    assert date is not None
    (tmp_path / "date").symlink_to(date)
    template = RECIPES["vllm"](inputs(launcher="ray")).entry
    done = run_script(container(template)["command"][2], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "no ray command" not in done.stderr
    assert calls.read_text().startswith("start --head --port=6379 --node-ip-address=10.0.0.7")
    argv = recorded_argv(tmp_path)
    assert argv[-2:] == ["--distributed-executor-backend", "ray"]
    assert "--nnodes" not in argv


def test_the_entry_gives_up_when_the_wait_is_over_and_names_it(tmp_path: Path) -> None:
    stand_in(tmp_path, "ray", "exit 0")
    stand_in(tmp_path, "python3", "echo 1")  # the worker never joins
    stand_in(tmp_path, "sleep", "exit 0")
    stand_in(tmp_path, "vllm", f": > {tmp_path / 'argv'}")
    date = shutil.which("date")
    assert date is not None
    (tmp_path / "date").symlink_to(date)
    template = RECIPES["vllm"](inputs(launcher="ray")).entry
    script = container(template)["command"][2]
    assert SH is not None
    env = {**POD_ENV, "PATH": str(tmp_path), "PHALANX_RAY_WAIT_SECONDS": "0"}
    done = subprocess.run(
        [SH, "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert "Ray workers did not all join within 0s (want 2 nodes)" in done.stderr
    assert not (tmp_path / "argv").exists()  # vllm never started
