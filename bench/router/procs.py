"""Child processes of a benchmark: simulators and routers, each in its own process group.

`Processes` is a context manager: whatever it started is sent SIGTERM (the whole group), given a
few seconds, then SIGKILL, on every exit path. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
VENVS = Path.home() / ".cache" / "phalanx" / "bench-venvs"
MODEL = "bench-model"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so every `finally` (and so every process group) is cleaned up
    when a benchmark is stopped the ordinary way, not only on Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process in this child's process group."""
        return group_cpu_seconds(self.process.pid)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def group_cpu_seconds(pgid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # After the command: state ppid pgrp ... utime (index 11) stime (12).
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


class Processes:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # its own process group, killed as one
                cwd=ROOT,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace_s: float = 5.0) -> None:
        if child.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(grace_s)
        # The leader may be gone while others in its group live on: always finish the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        if child.process.poll() is None:
            child.process.wait(5)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)


def run_bounded(argv: Sequence[str], timeout_s: float, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Runs a command in its own process group; past `timeout_s` the whole group is killed.

    Returns (exit code, stdout + stderr); the exit code is -1 on timeout.
    """
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout_s)
        code = process.returncode
        prefix = ""
    except subprocess.TimeoutExpired:
        code, prefix = -1, f"timed out after {timeout_s:.0f} s\n"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    finally:
        # Whatever the client left behind in its group (worker processes) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    return code, prefix + out.decode(errors="replace")


class StartError(RuntimeError):
    pass


def post_json(url: str, body: dict[str, object], timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_serving(child: Child, url: str, timeout_s: float = 60.0) -> None:
    """Until a one-token completion through `url` answers 200 (proves the whole path works)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StartError(f"{child.name} exited with {child.process.returncode}:\n{child.tail()}")
        try:
            status, body = post_json(
                f"{url}/v1/completions", {"model": MODEL, "prompt": "ready?", "max_tokens": 1}, timeout=2
            )
            if status == 200:
                return
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StartError(f"{child.name} not serving after {timeout_s:.0f} s ({last}):\n{child.tail()}")


# -- simulators --------------------------------------------------------------------------------


def start_sims(
    procs: Processes, count: int, sim_args: Sequence[str], prefix: str = "sim", tokenize: bool = True
) -> list[str]:
    """`count` simulators (`phalanx sim`, one process each); returns their base URLs once all serve.

    `tokenize`: run them through `sim_tokenize.py`, which adds vLLM's `POST /tokenize`.
    """
    children = []
    entry = [str(ROOT / "bench" / "router" / "sim_tokenize.py")] if tokenize else ["-m", "phalanx", "sim"]
    for i in range(count):
        port = free_port()
        argv = [sys.executable, *entry, "--served-model-name", MODEL]
        argv += ["--host", HOST, "--port", str(port), "--join-port", str(free_port()), *sim_args]
        children.append((procs.spawn(f"{prefix}-{i}", argv), f"http://{HOST}:{port}"))
    for child, url in children:
        wait_serving(child, url)
    return [url for _, url in children]


def scrape(url: str) -> dict[str, float]:
    """The simulator's counters that the benchmarks read, summed over label sets."""
    wanted = (
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:request_success_total",
        "vllm:num_preemptions_total",
        "vllm:prompt_tokens_total",
    )
    status, body = get(f"{url}/metrics")
    out = dict.fromkeys(wanted, 0.0)
    if status != 200:
        return out
    for line in body.decode().splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


# -- the record of where and with what it ran ---------------------------------------------------


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _run(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (done.stdout or done.stderr).strip()


def machine_info() -> dict[str, str]:
    from importlib import metadata

    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    dirty = _run(["git", "status", "--porcelain", "--", "src"])
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "git_commit": _run(["git", "rev-parse", "--short", "HEAD"])
        + (" (src/ has uncommitted changes)" if dirty else ""),
        "cpu_model": _first("/proc/cpuinfo", "model name"),
        "cpus": str(os.cpu_count()),
        "memory_gib": f"{int(mem_kb) / 1024 / 1024:.1f}" if mem_kb.isdigit() else "unknown",
        "kernel": platform.release(),
        "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "uvloop": _version(metadata, "uvloop"),
        "event_loop": os.environ.get("PHALANX_EVENT_LOOP") or "default (uvloop where the commit uses it)",
        "phalanx": metadata.version("phalanx"),
    }


def _version(metadata: Any, package: str) -> str:
    try:
        return str(metadata.version(package))
    except metadata.PackageNotFoundError:
        return "not installed"


def src_first(directory: Path) -> str:
    """A PYTHONPATH with the `src/` that `export_src` unpacked into `directory` ahead of the rest."""
    return os.pathsep.join(filter(None, [str(directory / "src"), os.environ.get("PYTHONPATH")]))


def export_src(ref: str, directory: Path) -> str:
    """`git archive REF src` unpacked into `directory` (put it on PYTHONPATH with `src_first`);
    returns the short commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    directory.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src"], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
    return commit


COMPILED_BUILDS = Path.home() / ".cache" / "phalanx" / "bench-compiled"
COMPILED_FILES = ["setup.py", "pyproject.toml", "README.md", "src"]


def compiled_build(ref: str | None) -> Path:
    """phalanx as it was at git commit REF (the working tree without one) built with the router
    compiled by mypyc (setup.py, PHALANX_COMPILE=1), for PYTHONPATH. Kept under COMPILED_BUILDS by
    commit (working tree: by a hash of its files); about 2 minutes to build. Raises LookupError when
    that version has no compiled build."""
    if ref is None:
        digest = hashlib.sha256()
        for path in sorted(p for name in COMPILED_FILES for p in _files(ROOT / name)):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
        key = "tree-" + digest.hexdigest()[:16]
    else:
        key = subprocess.run(
            ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    target = COMPILED_BUILDS / key
    if target.is_dir():
        return target
    COMPILED_BUILDS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=COMPILED_BUILDS, prefix=".build-") as scratch:
        # Always from a copy: pip builds in the source directory, and a `build/` left there by an
        # earlier build would go into this one.
        source = Path(scratch) / "source"
        source.mkdir()
        if ref is None:
            for name in COMPILED_FILES:
                if (ROOT / name).is_dir():
                    shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(ROOT / name, source / name)
        else:
            archive = subprocess.run(
                ["git", "archive", "--format=tar", ref, *COMPILED_FILES],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
            if archive.returncode != 0:
                raise LookupError(f"{ref} has no setup.py (no compiled build)")
            subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
        if "PHALANX_COMPILE" not in (source / "setup.py").read_text():
            raise LookupError(f"{ref or 'the working tree'} has no compiled build")
        out = Path(scratch) / "out"
        print(f"  building {ref or 'the working tree'} compiled (mypyc) into {target}", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps"]
        subprocess.run(
            [*pip, "--target", str(out), str(source)],
            env={**os.environ, "PHALANX_COMPILE": "1"},
            check=True,
        )
        out.rename(target)
    return target


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
