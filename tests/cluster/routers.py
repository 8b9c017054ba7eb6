"""`phalanx router` as a child process on the test control plane, and what it reports of discovery.

Shared by the cluster tests that check the router's endpoint set (`GET /debug/endpoints`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cluster.controlplane import free_port, stop_process_group, wait_for

Endpoints = dict[str, dict[str, Any]]


@contextlib.contextmanager
def router_process(
    kubeconfig: Path,
    namespaces: list[str],
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`phalanx router` in its own process group; yields it and its URL, prints its log on exit."""
    port = port or free_port()
    log = workdir / f"router-{host}-{port}.log"
    command = [
        sys.executable, "-m", "phalanx", "router", "--kubeconfig", str(kubeconfig),
        "--host", host, "--port", str(port), *[arg for ns in namespaces for arg in ("-n", ns)],
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    try:
        wait_for("the router to listen", lambda: process.poll() is not None or endpoints(url) is not None, 60)
        assert process.poll() is None, f"the router exited with {process.returncode}"
        yield process, url
    finally:
        stop_process_group(process)
        print(f"router exited with {process.returncode}; its log:\n{log.read_text(errors='replace')[-8000:]}")


def endpoints(url: str) -> Endpoints:
    with urllib.request.urlopen(f"{url}/debug/endpoints", timeout=5) as resp:
        body = json.loads(resp.read())
    return {ep["name"]: ep for ep in body["endpoints"]}


def routable_in(eps: Endpoints) -> set[str]:
    return {name for name, ep in eps.items() if ep["routable"]}


def eventually(what: str, url: str, check: Any, timeout: float = 60.0) -> Endpoints:
    """Wait until `check(endpoints)` holds; on timeout say what the router had."""
    seen: dict[str, Endpoints] = {}

    def poll() -> bool:
        seen["last"] = endpoints(url)
        return bool(check(seen["last"]))

    try:
        wait_for(what, poll, timeout=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; the router had {seen.get('last')}") from None
    return seen["last"]
