"""Debian's real Prometheus for tests: installed with apt-get where missing and possible, started on
loopback with the scrape jobs a test names and a rules file, and queried over its HTTP API. Also the
shipped dashboards' and rules' expressions, read the way both Prometheus tests read them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
METRIC = re.compile(r"\b(phalanx_[a-z_]+|vllm:[a-z_:]+|sglang:[a-z_:]+|kube_[a-z_]+|up)\b(\{[^}]*\})?")


def prometheus_binary() -> tuple[str, str]:
    """Debian's prometheus and promtool, installed with apt-get where missing and possible."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip(
                "prometheus is not installed; install it (Debian: apt-get install prometheus), as root"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
        done = subprocess.run(install, capture_output=True, env=env, check=False, timeout=300)
        if done.returncode != 0:
            subprocess.run(
                ["apt-get", "update", "-qq"], capture_output=True, env=env, check=False, timeout=300
            )
            done = subprocess.run(install, capture_output=True, env=env, check=False, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"apt-get could not install prometheus: {done.stderr.decode()[-500:]}")
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert prometheus and promtool
    return prometheus, promtool


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every target of every shipped dashboard, Grafana's variables filled in."""
    found: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "30s").replace("$model", ".*")
                found.append((f"{path.name}: {panel['title']}", expr))
    return found


def rule_list(path: Path = RULES) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in yaml.safe_load(path.read_text())["groups"]:
        rules.extend(group["rules"])
    return rules


def fast_rules(workdir: Path) -> Path:
    """The shipped rules with `for: 1s`: the expressions are the shipped ones."""
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
    path = workdir / "rules-fast.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def write_atomically(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, binary: str, workdir: Path, scrape_configs: list[dict[str, Any]], rules: Path) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(rules)],
            "scrape_configs": scrape_configs,
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float) -> list[Any]:
        result: list[Any] = self.api("query", query=expr, time=f"{at:.3f}")["result"]
        return result

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"}

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            ready = f"http://127.0.0.1:{self.port}/-/ready"
            with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextlib.contextmanager
def prometheus(
    binary: str, workdir: Path, scrape_configs: list[dict[str, Any]], rules: Path
) -> Iterator[Prometheus]:
    prom = Prometheus(binary, workdir, scrape_configs, rules)
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()
