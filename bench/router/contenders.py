"""Router configurations by name: what sits between the load generator and the simulators.

A contender is `KIND[:POLICY][ EXTRA ARGS]`, for example:

    direct                          no router: the first backend itself (overhead and wrk only)
    phalanx                         phalanx.router.Router, default config (least in-flight today)
    phalanx:NAME                    the same with RouterConfig(policy=NAME), once the router has one
    phalanx@REF[:NAME]              the router as it was at git commit REF (its src/ first on
                                    PYTHONPATH), to compare two versions in one run
    phalanx-cli[@REF][:NAME]        `phalanx router --backend URL ... [--policy NAME]` (its defaults:
                                    the access log on), optionally as it was at REF
    phalanx-compiled[@REF][:NAME]   the same, built with the router compiled by mypyc (setup.py,
                                    PHALANX_COMPILE=1: what the image runs); REF's build is kept
    vllm-router:round_robin         vllm-router (PyPI, Rust) with --policy round_robin
    vllm-router:cache_aware --balance-abs-threshold 8
                                    extra words go to that CLI unchanged
    floor:aiohttp, floor:httptools  a bare relay with no routing logic (floor.py): the cost floor
                                    of each HTTP design (capacity only)

Each runs in its own process (group) on 127.0.0.1 and is checked end to end before use.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import (
    HOST,
    MODEL,
    ROOT,
    VENVS,
    Child,
    Processes,
    StartError,
    compiled_build,
    export_src,
    free_port,
    src_first,
    wait_serving,
)

VLLM_ROUTER_VERSION = "0.1.17"
ROUTER_CPUS_ENV = "PHALANX_BENCH_ROUTER_CPUS"
VLLM_ROUTER_BIN = VENVS / "vllm-router" / "bin" / "vllm-router"
PHALANX_BIN = Path(sys.executable).parent / "phalanx"


class Unavailable(Exception):
    """This contender cannot run here; the message says why (reported, not fatal)."""


@dataclass(frozen=True)
class Contender:
    spec: str
    kind: str
    policy: str | None
    extra: tuple[str, ...]
    git_ref: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Contender:
        words = shlex.split(spec)
        if not words:
            raise ValueError("empty contender")
        kind, _, policy = words[0].partition(":")
        kind, _, git_ref = kind.partition("@")
        if git_ref and kind not in ("phalanx", "phalanx-cli", "phalanx-compiled"):
            raise ValueError(f"only phalanx contenders take @REF, not {kind!r} in {spec!r}")
        if kind not in ("direct", "phalanx", "phalanx-cli", "phalanx-compiled", "vllm-router", "floor"):
            raise ValueError(f"unknown contender kind {kind!r} in {spec!r}")
        if kind == "direct" and (policy or words[1:]):
            raise ValueError("`direct` takes no policy or arguments")
        if kind == "phalanx" and words[1:]:
            raise ValueError("`phalanx` takes no extra arguments; use phalanx-cli for CLI flags")
        return cls(" ".join(words), kind, policy or None, tuple(words[1:]), git_ref or None)

    @property
    def is_ours(self) -> bool:
        return self.kind.startswith("phalanx")

    def start(self, procs: Processes, backends: list[str], label: str) -> tuple[Child | None, str]:
        """Starts the contender; returns its process (None for direct) and base URL once it serves."""
        if self.kind == "direct":
            return None, backends[0]
        port = free_port()
        url = f"http://{HOST}:{port}"
        name = f"{label}-{self.spec.split()[0].replace(':', '-').replace('@', '-')}"
        env: dict[str, str] = {}
        if self.kind == "phalanx-compiled":
            try:
                build = compiled_build(self.git_ref)
            except LookupError as exc:
                raise Unavailable(str(exc)) from None
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(build), os.environ.get("PYTHONPATH")]))
        elif self.git_ref:
            snapshot = procs.log_dir / f"src-{self.git_ref.replace('/', '-')}"
            export_src(self.git_ref, snapshot)
            env["PYTHONPATH"] = src_first(snapshot)
        if self.kind == "phalanx":
            argv = [sys.executable, str(ROOT / "bench" / "router" / "serve_phalanx.py")]
            argv += ["--port", str(port), "--model", MODEL]
            for backend in backends:
                argv += ["--backend", backend]
            if self.policy:
                argv += ["--policy", self.policy]
        elif self.kind in ("phalanx-cli", "phalanx-compiled"):
            help_text = _help([str(PHALANX_BIN), "router", "--help"])
            for flag in ["--backend"] + (["--policy"] if self.policy else []):
                if flag not in help_text:
                    raise Unavailable(f"`phalanx router` has no {flag} option yet")
            argv = [str(PHALANX_BIN), "router", "--host", HOST, "--port", str(port)]
            for backend in backends:
                argv += ["--backend", backend]
            if self.policy:
                argv += ["--policy", self.policy]
            argv += self.extra
        elif self.kind == "floor":
            argv = [sys.executable, str(ROOT / "bench" / "router" / "floor.py"), self.policy or "aiohttp"]
            argv += ["--port", str(port)]
            for backend in backends:
                argv += ["--backend", backend]
        else:
            if not VLLM_ROUTER_BIN.exists():
                raise Unavailable(f"{VLLM_ROUTER_BIN} missing: run `run.py setup`")
            argv = [str(VLLM_ROUTER_BIN), "--host", HOST, "--port", str(port)]
            argv += ["--worker-urls", *backends]
            argv += ["--policy", self.policy or "cache_aware"]
            # Its own metrics port must not collide between instances; the startup poll interval
            # (default 30 s) only delays the start.
            argv += ["--prometheus-port", str(free_port()), "--worker-startup-check-interval", "1"]
            argv += ["--log-level", "warning", *self.extra]
        # run.py --pin: the router gets its own core(s); everything else inherits the others.
        cpus = os.environ.get(ROUTER_CPUS_ENV)
        child = procs.spawn(name, ["taskset", "-c", cpus, *argv] if cpus else argv, env)
        try:
            wait_serving(child, url)
        except StartError as exc:
            procs.stop(child)
            if child.process.returncode == 3:  # serve_phalanx: no such policy option
                raise Unavailable(child.tail(3).strip()) from None
            raise Unavailable(str(exc)) from None
        return child, url


def _help(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{argv[0]}: {exc}") from None
    return done.stdout + done.stderr


def vllm_router_version() -> str:
    python = VLLM_ROUTER_BIN.parent / "python"
    if not python.exists():
        return "not installed"
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('vllm-router'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or done.stderr.strip()
