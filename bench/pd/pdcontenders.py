"""Contenders: a router in front of four `phalanx sim` processes laid out one way.

A contender is `ROUTER:LAYOUT`:

    ROUTER   ours[@N]        `phalanx router`, static --backend endpoints marked with their PD role;
                             N: its prefill threshold in tokens (default MIN_PREFILL_TOKENS)
             ours-sglang     the same, the simulators in their SGLang flavour
             vllm-router     vllm-router (PyPI, Rust) in --vllm-pd-disaggregation mode, kv connector nixl
             sglang-router   sglang-router (PyPI, Rust) in --pd-disaggregation mode
    LAYOUT   agg4            four aggregated engines (ours only)
             1p3d, 2p2d      prefill engines + decode engines, four in all

Every simulator gets the same latency model (the simulator's defaults: one simulated GPU each); a
PD engine differs only by the flags that make it a prefill or a decode engine, in the flavour its
router speaks (vLLM: --kv-transfer-config and a NIXL side channel; SGLang: --disaggregation-mode
and a bootstrap port on prefill engines).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from contenders import Unavailable  # bench/router's: "not run, because ..."
from procs import HOST, MODEL, VENVS, Child, Processes, StartError, free_port, get, wait_serving
from workload import MAX_MODEL_LEN

VLLM_ROUTER = VENVS / "vllm-router-pd" / "bin" / "vllm-router"
SGLANG_PYTHON = VENVS / "sglang-router-pd" / "bin" / "python"
# Our router's PD skip threshold here (its estimate: prompt characters / 4). The workload's short
# prompts (at most 1024 tokens, about 1300 by that estimate) stay under it, its long ones (8192
# tokens and up) far over it: short prompts must never reach prefill. `ours@N:...` sets another.
MIN_PREFILL_TOKENS = 2048
ROUTERS = ("ours", "ours-before", "ours-sglang", "vllm-router", "sglang-router")
# `ours-before`: our router from another source tree (PYTHONPATH=this variable's value), to compare
# a routing change before and after in one run on the same machine; the engines are this tree's.
BEFORE_SRC = "PHALANX_BENCH_BEFORE_SRC"
LAYOUTS = {"agg4": (0, 0), "1p3d": (1, 3), "2p2d": (2, 2)}  # (prefill, decode); agg4: 4 plain
AGGREGATED = 4


@dataclass(frozen=True)
class Engine:
    role: str  # "agg" | "prefill" | "decode"
    url: str
    bootstrap_port: int | None = None  # SGLang prefill engines


@dataclass(frozen=True)
class Contender:
    router: str
    layout: str
    min_prefill_tokens: int = MIN_PREFILL_TOKENS  # ours only

    @classmethod
    def parse(cls, spec: str) -> Contender:
        router, _, layout = spec.partition(":")
        router, at, threshold = router.partition("@")
        if at and (not router.startswith("ours") or not threshold.isdigit()):
            raise ValueError(f"{spec!r}: only our router takes @N (a prefill threshold in tokens)")
        if router not in ROUTERS:
            raise ValueError(f"{spec!r}: router must be one of {', '.join(ROUTERS)}")
        if layout not in LAYOUTS:
            raise ValueError(f"{spec!r}: layout must be one of {', '.join(LAYOUTS)}")
        if layout == "agg4" and router != "ours":
            raise ValueError(f"{spec!r}: only `ours` serves the aggregated layout here")
        return cls(router, layout, int(threshold) if at else MIN_PREFILL_TOKENS)

    @property
    def name(self) -> str:
        threshold = "" if self.min_prefill_tokens == MIN_PREFILL_TOKENS else f"@{self.min_prefill_tokens}"
        return f"{self.router}{threshold}:{self.layout}"

    @property
    def flavour(self) -> str:
        return "sglang" if self.router in ("ours-sglang", "sglang-router") else "vllm"

    def start_engines(self, procs: Processes, sim_args: list[str]) -> list[Engine]:
        prefill, decode = LAYOUTS[self.layout]
        roles = ["agg"] * AGGREGATED if not prefill else ["prefill"] * prefill + ["decode"] * decode
        started: list[tuple[Child, Engine]] = []
        for i, role in enumerate(roles):
            port = free_port()
            argv = [sys.executable, "-m", "phalanx", "sim", "--served-model-name", MODEL]
            argv += ["--host", HOST, "--port", str(port), "--join-port", str(free_port())]
            argv += ["--max-model-len", str(MAX_MODEL_LEN), *sim_args]
            extra, env, bootstrap = _role_flags(role, self.flavour)
            child = procs.spawn(f"sim-{i}-{role}", argv + extra, env)
            started.append((child, Engine(role, f"http://{HOST}:{port}", bootstrap)))
        for child, engine in started:
            if engine.role == "agg":
                wait_serving(child, engine.url)
            else:  # a PD engine answers only requests a PD router prepared: its health, then the router's
                wait_healthy(child, engine.url)
        return [engine for _, engine in started]

    def start_router(self, procs: Processes, engines: list[Engine]) -> tuple[Child, str]:
        binary = {"vllm-router": VLLM_ROUTER, "sglang-router": SGLANG_PYTHON}.get(self.router)
        if binary is not None and not binary.exists():
            raise Unavailable(f"{binary} missing: run `run.py setup`")
        env = None
        if self.router == "ours-before":
            before = os.environ.get(BEFORE_SRC, "")
            if not (Path(before) / "phalanx" / "router").is_dir():
                raise Unavailable(f"{BEFORE_SRC} must name another tree's src/ directory, got {before!r}")
            env = {"PYTHONPATH": before}
        port = free_port()
        url = f"http://{HOST}:{port}"
        argv = self.router_argv(port, engines)
        child = procs.spawn(f"router-{self.router}", argv, env)
        try:
            wait_serving(child, url, timeout_s=90)
        except StartError as exc:
            procs.stop(child)
            raise Unavailable(str(exc)) from None
        return child, url

    def router_argv(self, port: int, engines: list[Engine]) -> list[str]:
        prefills = [e for e in engines if e.role == "prefill"]
        decodes = [e for e in engines if e.role == "decode"]
        if self.router.startswith("ours"):
            argv = [sys.executable, str(Path(__file__).with_name("serve_ours.py")), "--port", str(port)]
            argv += ["--min-prefill-tokens", str(self.min_prefill_tokens)]
            return argv + [w for e in engines for w in ("--backend", _static_url(e, self.flavour))]
        if self.router == "vllm-router":
            argv = [str(VLLM_ROUTER), "--host", HOST, "--port", str(port), "--vllm-pd-disaggregation"]
            for e in prefills:
                argv += ["--prefill", e.url]
            for e in decodes:
                argv += ["--decode", e.url]
            argv += ["--kv-connector", "nixl", "--prometheus-port", str(free_port())]
            return [*argv, "--worker-startup-check-interval", "1", "--log-level", "warning"]
        argv = [str(SGLANG_PYTHON), "-m", "sglang_router.launch_router", "--pd-disaggregation"]
        argv += ["--host", HOST, "--port", str(port)]
        for e in prefills:
            argv += ["--prefill", e.url, str(e.bootstrap_port)]
        for e in decodes:
            argv += ["--decode", e.url]
        argv += ["--prometheus-port", str(free_port())]
        return [*argv, "--worker-startup-check-interval", "1", "--log-level", "warn"]


def wait_healthy(child: Child, url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StartError(f"{child.name} exited with {child.process.returncode}:\n{child.tail()}")
        with contextlib.suppress(OSError):
            if get(f"{url}/health", timeout=2)[0] == 200:
                return
        time.sleep(0.1)
    raise StartError(f"{child.name} not healthy after {timeout_s:.0f} s:\n{child.tail()}")


def _role_flags(role: str, flavour: str) -> tuple[list[str], dict[str, str], int | None]:
    """(extra argv, environment, bootstrap port) that make a simulator this role in this flavour."""
    if role == "agg":
        return [], {}, None
    if flavour == "vllm":
        kv_role = "kv_producer" if role == "prefill" else "kv_consumer"
        config = {"kv_connector": "NixlConnector", "kv_role": kv_role, "kv_load_failure_policy": "fail"}
        env = {"VLLM_NIXL_SIDE_CHANNEL_HOST": HOST, "VLLM_NIXL_SIDE_CHANNEL_PORT": str(free_port())}
        return ["--kv-transfer-config", json.dumps(config)], env, None
    argv = ["--disaggregation-mode", role, "--disaggregation-transfer-backend", "mooncake"]
    if role == "decode":
        return argv, {}, None
    bootstrap = free_port()
    return [*argv, "--disaggregation-bootstrap-port", str(bootstrap)], {}, bootstrap


def _static_url(engine: Engine, flavour: str) -> str:
    """Our router's static endpoint: the PD role, protocol and bootstrap port in the query."""
    if engine.role == "agg":
        return engine.url
    query = f"pd-role={engine.role}&pd-protocol={flavour}"
    if engine.bootstrap_port is not None:
        query += f"&bootstrap-port={engine.bootstrap_port}"
    return f"{engine.url}?{query}"
