#!/usr/bin/env python3
"""Run the vLLM Ray launcher's rendered pod scripts as real processes on loopback, with a stand-in engine.

A development check, run by hand (it starts a real Ray cluster; never in the default tests);
bench/engines/README.md says how to run it:

    bash hack/engines/install.sh                      # once: the vLLM venv holds the real `ray`
    .venv/bin/python hack/engines/check_ray.py [--delay S] [--wait S]

It compiles a two-node vLLM ModelDeployment (launcher ray) with the imported checkout's compiler, takes
the entry and worker pods' `sh -c` scripts as rendered, and runs them unchanged with `sh`, as two "nodes"
on 127.0.0.1 and 127.0.0.2 (the pod env the controller would give: POD_IP, ENTRY_ADDRESS, WORKER_INDEX,
GROUP_SIZE). PATH holds a stand-in `vllm` first, then the venv's bin (its `ray` and `python3`). Ray's
GPU count comes from RAY_OVERRIDE_RESOURCES (the pod's nvidia.com/gpu), as no GPU is here. The stand-in
asks the Ray cluster for its live nodes and GPUs and records them with its argv. Cases:

- join: the entry starts first, the worker `--delay` seconds later; the entry must start the stand-in
  only after the worker joined, and the stand-in must see both nodes and every GPU of the group.
- no worker: the entry alone, with PHALANX_RAY_WAIT_SECONDS=`--wait` in its env; it must exit 1 with
  the wait's message and never start the stand-in.
- without ray: PATH without `ray`; both pods must reach the stand-in through the native launcher.

Every process it starts carries a marker in its env; at the end (and on SIGTERM or failure) every
process with that marker is killed by pid, so the Ray processes `ray start` leaves behind go too.
Prints Markdown; exits 1 when a case fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from check_argv import ENGINES_CACHE, VERSIONS, _deployment, _installed, source_line

from phalanx.api import ModelDeployment, parse_resource
from phalanx.compiler import compile_deployment

VENV = ENGINES_CACHE / f"vllm-{VERSIONS['vllm']}"
# Not 127.0.0.1: Ray puts the machine's own address in place of that one.
ENTRY_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
# What the controller injects into every pod of the group (controller/desired.py), loopback addresses
# in place of the pod IP and the entry's DNS name.
ENTRY_ENV = {"POD_IP": ENTRY_IP, "ENTRY_ADDRESS": ENTRY_IP, "WORKER_INDEX": "0", "GROUP_SIZE": "2"}
WORKER_ENV = {"POD_IP": WORKER_IP, "ENTRY_ADDRESS": ENTRY_IP, "WORKER_INDEX": "1", "GROUP_SIZE": "2"}
MARKER = "PHALANX_RAY_CHECK"
DEADLINE_SECONDS = 170  # the whole run; the check must end well inside 3 minutes

STAND_IN = """#!{python}
# Stand-in for `vllm`: records its argv and what the Ray cluster it would run on holds.
import json, os, sys, time
report = {{"started": time.time(), "argv": sys.argv[1:]}}
if "--nnodes" not in sys.argv:
    import ray
    ray.init(address="auto", logging_level="ERROR")
    alive = [n for n in ray.nodes() if n["Alive"]]
    report["nodes"] = sorted(n["NodeManagerAddress"] for n in alive)
    report["gpus"] = ray.cluster_resources().get("GPU", 0)
    ray.shutdown()
with open(os.environ["STAND_IN_REPORT"], "w") as out:
    json.dump(report, out)
"""


@dataclass
class Script:
    """A pod's rendered script and env (the template's own values; the controller's added by the run)."""

    text: str
    env: dict[str, str]
    gpus: int


@dataclass
class Running:
    name: str
    process: subprocess.Popen[str]
    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)

    def first(self, text: str) -> float | None:
        return next((t for t, line in self.lines if text in line), None)

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


def render() -> tuple[Script, Script, dict[str, Any]]:
    """The entry and worker scripts of a two-node vLLM Ray deployment, compiled by this checkout."""
    case = _deployment(
        "vllm-ray-2node",
        engine="vllm",
        launcher="ray",
        model="llama-3.1-405b-instruct",
        instanceType="p5.48xlarge",
        maxNodes=2,
        maxModelLen=8192,
    )
    resource, problems = parse_resource(case)
    assert isinstance(resource, ModelDeployment) and not problems, problems
    compiled = compile_deployment(resource)
    role = compiled.model_serving.to_dict()["spec"]["template"]["roles"][0]
    scripts = []
    for key in ("entryTemplate", "workerTemplate"):
        container = role[key]["spec"]["containers"][0]
        assert container["command"][:2] == ["sh", "-c"], container["command"]
        env = {item["name"]: str(item["value"]) for item in container.get("env", []) if "value" in item}
        gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
        scripts.append(Script(container["command"][2], env, gpus))
    plan = compiled.plan
    shown = {
        "nodes": plan.nodes,
        "tensor": plan.tensor_parallel_size,
        "pipeline": plan.pipeline_parallel_size,
        "workers": role.get("workerReplicas"),
    }
    return scripts[0], scripts[1], shown


class Run:
    """The processes of one check run, all of them killed at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = uuid.uuid4().hex
        self.running: list[Running] = []
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "vllm").write_text(STAND_IN.format(python=VENV / "bin" / "python"))
        (self.bin / "vllm").chmod(0o755)
        # Without ray: the stand-in and the system's tools, but no venv (and so no `ray`).
        self.no_ray = root / "no-ray"
        self.no_ray.mkdir()
        (self.no_ray / "vllm").symlink_to(self.bin / "vllm")

    def start(self, name: str, script: Script, pod_env: dict[str, str], *, ray: bool) -> Running:
        system = "/usr/local/bin:/usr/bin:/bin"
        path = f"{self.bin}:{VENV / 'bin'}:{system}" if ray else f"{self.no_ray}:{system}"
        env = {
            "HOME": os.environ.get("HOME", str(self.root)),
            "PATH": path,
            "RAY_TMPDIR": str(self.root / "ray"),
            # No GPU here: the Ray node announces the pod's GPUs, and one CPU (the machine is shared).
            "RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 1, "GPU": script.gpus}),
            "RAY_USAGE_STATS_ENABLED": "0",
            "STAND_IN_REPORT": str(self.root / f"{name}.json"),
            MARKER: self.marker,
            **script.env,
            **pod_env,
        }
        process = subprocess.Popen(
            ["sh", "-c", script.text],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        running = Running(name, process, time.time())
        assert process.stdout is not None
        threading.Thread(target=_read, args=(process.stdout, running.lines), daemon=True).start()
        self.running.append(running)
        return running

    def report(self, name: str) -> dict[str, Any] | None:
        path = self.root / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def stop(self) -> None:
        """Kill every process group started here, then every process that carries this run's marker."""
        for running in self.running:
            _kill_group(running.process.pid)
        for pid in _marked(self.marker):
            _kill(pid)
        for running in self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=10)

        self.running = []


def _read(stream: TextIO, lines: list[tuple[float, str]]) -> None:
    for line in stream:
        lines.append((time.time(), line.rstrip("\n")))


def _kill_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(1)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _marked(marker: str) -> list[int]:
    """Our processes (same user) whose env holds this run's marker: Ray's daemons left behind included."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_exit(running: Running, timeout: float) -> int | None:
    try:
        return running.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def case_join(run: Run, entry: Script, worker: Script, delay: float, shown: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    head = run.start("entry", entry, ENTRY_ENV, ray=True)
    time.sleep(delay)
    joined_pod = run.start(
        "worker",
        worker,
        WORKER_ENV,
        ray=True,
    )
    code = wait_exit(head, 90)
    report = run.report("entry")
    joined = joined_pod.first("Ray runtime started")
    if code != 0:
        problems.append(f"join: the entry exited {code}:\n{head.output()[-2000:]}")
    if joined is None:
        problems.append(f"join: the worker never reported joining:\n{joined_pod.output()[-2000:]}")
    if joined_pod.process.poll() is not None:
        problems.append(
            f"join: the worker exited {joined_pod.process.returncode}: `ray start --block` must stay"
        )
    if report is None:
        problems.append("join: the entry never started the stand-in engine")
        return problems
    gpus = shown["tensor"] * shown["pipeline"]
    if report.get("nodes") != [ENTRY_IP, WORKER_IP]:
        problems.append(f"join: the stand-in saw nodes {report.get('nodes')}, want {[ENTRY_IP, WORKER_IP]}")
    if report.get("gpus") != gpus:
        problems.append(f"join: the stand-in saw {report.get('gpus')} GPUs, want {gpus}")
    argv = report["argv"]
    if argv[-2:] != ["--distributed-executor-backend", "ray"] or "--nnodes" in argv:
        problems.append(f"join: the engine's argv is not the Ray one: {argv}")
    if joined is not None and report["started"] < joined:
        problems.append("join: the entry started the engine before the worker joined")
    shown["join"] = {
        "worker started after entry (s)": round(joined_pod.started - head.started, 1),
        "worker joined after its start (s)": None
        if joined is None
        else round(joined - joined_pod.started, 1),
        "engine started after the worker joined (s)": None
        if joined is None
        else round(report["started"] - joined, 1),
        "engine started after entry start (s)": round(report["started"] - head.started, 1),
        "nodes the engine saw": report.get("nodes"),
        "GPUs the engine saw": report.get("gpus"),
        "engine argv tail": " ".join(argv[-2:]),
    }
    return problems


def case_no_worker(run: Run, entry: Script, wait: int, shown: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    head = run.start(
        "alone",
        entry,
        {**ENTRY_ENV, "PHALANX_RAY_WAIT_SECONDS": str(wait)},
        ray=True,
    )
    code = wait_exit(head, wait + 60)
    ended = time.time()
    message = f"Ray workers did not all join within {wait}s (want 2 nodes)"
    if code != 1:
        problems.append(f"no worker: the entry exited {code}, want 1:\n{head.output()[-2000:]}")
    if message not in head.output():
        problems.append(f"no worker: the entry's output lacks {message!r}:\n{head.output()[-2000:]}")
    if run.report("alone") is not None:
        problems.append("no worker: the entry started the engine without its worker")
    shown["no worker"] = {
        "wait (s)": wait,
        "entry exited after (s)": round(ended - head.started, 1),
        "exit status": code,
        "last line": head.lines[-1][1] if head.lines else "",
    }
    return problems


def case_without_ray(run: Run, entry: Script, worker: Script, shown: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    pods = {
        "native-entry": run.start("native-entry", entry, ENTRY_ENV, ray=False),
        "native-worker": run.start(
            "native-worker",
            worker,
            WORKER_ENV,
            ray=False,
        ),
    }
    result = {}
    for name, running in pods.items():
        code = wait_exit(running, 30)
        report = run.report(name)
        argv = report["argv"] if report else []
        if code != 0 or report is None:
            problems.append(
                f"without ray: {name} exited {code} without the stand-in:\n{running.output()[-2000:]}"
            )
        elif "no ray command in this image" not in running.output():
            problems.append(f"without ray: {name} did not say why it runs the native launcher")
        rank = argv[argv.index("--node-rank") + 1] if "--node-rank" in argv else None
        want = "0" if name == "native-entry" else "1"
        if report is not None and (rank != want or "--nnodes" not in argv):
            problems.append(f"without ray: {name} argv lacks --nnodes/--node-rank {want}: {argv}")
        result[name] = f"exit {code}, node rank {rank}, headless={'--headless' in argv}"
    shown["without ray"] = result
    return problems


def _header() -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Run {when}; Phalanx from {source_line()}; {_installed('vllm', ('vllm', 'ray'))}."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay", type=float, default=10.0, help="seconds between the entry and the worker")
    parser.add_argument("--wait", type=int, default=20, help="PHALANX_RAY_WAIT_SECONDS of the no-worker case")
    options = parser.parse_args()
    if not (VENV / "bin" / "ray").exists():
        print(f"no {VENV}/bin/ray: run hack/engines/install.sh first", file=sys.stderr)
        return 2
    entry, worker, shown = render()
    started = time.time()
    problems: list[str] = []

    def stop_now(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop_now)
    signal.signal(signal.SIGALRM, stop_now)
    signal.alarm(DEADLINE_SECONDS)
    with tempfile.TemporaryDirectory(prefix="rc-") as folder:  # short: Ray's socket paths live under it
        run = Run(Path(folder))
        cases: list[Callable[[], list[str]]] = [
            lambda: case_join(run, entry, worker, options.delay, shown),
            lambda: case_no_worker(run, entry, options.wait, shown),
            lambda: case_without_ray(run, entry, worker, shown),
        ]
        try:
            for case in cases:
                try:
                    problems += case()
                finally:
                    run.stop()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
            run.stop()
            left = _marked(run.marker)
            if left:
                problems.append(f"processes left after the cleanup: {left}")
    print("## Ray bootstrap with a stand-in engine\n")
    print(_header())
    print(f"Whole run: {time.time() - started:.0f} s.\n")
    print(f"Deployment: {json.dumps({k: shown[k] for k in ('nodes', 'tensor', 'pipeline', 'workers')})}\n")
    for name in ("join", "no worker", "without ray"):
        print(f"### {name}\n")
        for key, value in shown.get(name, {}).items():
            print(f"- {key}: {value}")
        print()
    print("### Problems\n")
    print("\n".join(f"- {p}" for p in problems) if problems else "None.")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
