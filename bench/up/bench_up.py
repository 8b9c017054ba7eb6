"""Measures `phalanx up` on this machine: cold start to first token, worker kill to Ready again,
and failed requests during a full rollout under load.

    .venv/bin/python bench/up/bench_up.py --runs 5

Each run starts a fresh `phalanx up` (the quickstart: 2 groups x (entry + 1 worker) of the
simulator) in a temporary state directory, and stops it at the end. Prints one JSON line per
run and a summary (median, min, max); copy the summary into bench/up/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import openai
import yaml

from phalanx.embedded.client import ControlError, NotRunningError, call

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec(seed: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    data["spec"]["template"]["restartGracePeriodSeconds"] = 0
    role = data["spec"]["template"]["roles"][0]
    role["entryTemplate"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = 1
    if seed is not None:
        for template in ("entryTemplate", "workerTemplate"):
            container = role[template]["spec"]["containers"][0]
            container["args"] = [*container["args"], "--seed", seed]
    return data


class Up:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state = workdir / "state"
        self.port = free_port()
        self.spec = workdir / "spec.yaml"
        self.spec.write_text(yaml.safe_dump(spec()))
        command = [sys.executable, "-m", "phalanx", "up", "-f", str(self.spec), "--port", str(self.port)]
        command += ["--state-dir", str(self.state)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="x", max_retries=0)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = call(self.state, "GET", "/v1/status", timeout=10)
        return result

    def serving(self) -> dict[str, Any]:
        return self.status()["servings"][0]  # type: ignore[no-any-return]

    def wait(self, check: Any, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except (NotRunningError, ControlError, openai.APIError, KeyError, IndexError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError("condition not reached")

    def available(self) -> bool:
        status = self.serving().get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return conditions.get("Available") == "True" and status.get("replicas") == 2

    def first_token(self) -> bool:
        stream = self.client.chat.completions.create(
            model="tiny-test", messages=[{"role": "user", "content": "hi"}], max_tokens=1, stream=True
        )
        return any(chunk.choices and chunk.choices[0].delta.content for chunk in stream)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)


def one_run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="phalanx-bench-") as tmp:
        started = time.monotonic()
        up = Up(Path(tmp))
        try:
            up.wait(up.first_token)
            cold = time.monotonic() - started
            up.wait(up.available)

            pods = {p["name"]: p for p in up.status()["pods"]}
            killed = time.monotonic()
            os.kill(pods["quickstart-0-sim-0-1"]["pids"][0], signal.SIGKILL)
            up.wait(lambda: not up.available())
            up.wait(up.available)
            recovery = time.monotonic() - killed

            failures, ok = rollout_under_load(up)
        finally:
            up.stop()
    return {
        "cold_up_to_first_token_s": cold,
        "worker_kill_to_ready_s": recovery,
        "rollout_ok": ok,
        "rollout_failed": failures,
    }


def rollout_under_load(up: Up, workers: int = 4) -> tuple[int, int]:
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def load() -> None:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{up.port}/v1", api_key="x", max_retries=0)
        while not stop.is_set():
            try:
                stream = client.chat.completions.create(
                    model="tiny-test",
                    messages=[{"role": "user", "content": "go"}],
                    max_tokens=16,
                    stream=True,
                )
                finished = [c.choices[0].finish_reason for c in stream if c.choices]
                key = "ok" if finished and finished[-1] == "length" else "failed"
            except openai.APIError:
                key = "failed"
            with lock:
                counts[key] += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    old = up.serving()["status"]["updateRevision"]
    (up.workdir / "v2.yaml").write_text(yaml.safe_dump(spec(seed="2")))
    call(up.state, "POST", "/v1/apply", {"text": (up.workdir / "v2.yaml").read_text(), "source": "v2.yaml"})

    def done() -> bool:
        status = up.serving()["status"]
        conditions = {c["type"]: c for c in status["conditions"]}
        return (
            status["updateRevision"] != old
            and conditions["UpdateInProgress"]["reason"] == "UpdateComplete"
            and conditions["Available"]["status"] == "True"
            and status["replicas"] == 2
        )

    up.wait(done, timeout=180)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(60)
    return counts["failed"], counts["ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for index in range(args.runs):
        result = one_run()
        results.append(result)
        print(json.dumps({"run": index + 1, **result}), flush=True)
    summary: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "runs": args.runs,
    }
    for key in ("cold_up_to_first_token_s", "worker_kill_to_ready_s"):
        values = [r[key] for r in results]
        summary[key] = {
            "median": round(statistics.median(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }
    summary["rollout_failed_total"] = sum(r["rollout_failed"] for r in results)
    summary["rollout_ok_total"] = sum(r["rollout_ok"] for r in results)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
