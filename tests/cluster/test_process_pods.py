"""Process-backed pods on the real control plane: real engines behind the operator's pods.

Pods bound to process nodes run as local processes (see `procpods.py`), so the operator, `phalanx
router` discovering entry pods through the API server, and `phalanx sim` engines serve real requests
from the `openai` client end to end.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Pod

from phalanx.kube.resources import ModelServingResource
from phalanx.runtimes.local.procs import group_alive
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.load import StreamingLoad
from tests.cluster.procpods import ProcessKubelet, process_kubelet, unresolved_names
from tests.cluster.routers import eventually, routable_in, router_process
from tests.cluster.servings import MODEL, available, pods_of, sim_serving

pytestmark = pytest.mark.cluster


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


def complete(url: str) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
    try:
        answer = client.completions.create(model=MODEL, prompt="Say hello", max_tokens=8)
    finally:
        client.close()
    return answer.choices[0].text


# -- the harness alone -----------------------------------------------------------------------------


def test_names_in_the_pods_namespace_wait_for_an_address() -> None:
    assert unresolved_names(["demo-0-sim-0.ns1"], "ns1") == ["demo-0-sim-0.ns1"]
    assert unresolved_names(["http://a.b.ns1.svc.cluster.local:8000/x"], "ns1") == [
        "a.b.ns1.svc.cluster.local"
    ]
    assert unresolved_names(["127.1.0.2", "tiny-test", "huggingface.co", "a.other"], "ns1") == []
    assert unresolved_names(["ns1.example.com"], "ns1") == []  # the namespace must be a name's suffix


def test_a_pod_on_a_process_node_runs_is_probed_restarted_and_stopped(
    control_plane: ControlPlane, kubelet: ProcessKubelet
) -> None:
    cp = control_plane
    client = cp.client()
    namespace = cp.new_namespace("proc")
    node = kubelet.add_node(f"{namespace}-p0")
    serve = "import http.server as h, os; h.HTTPServer((os.environ['POD_IP'], 8080), h.SimpleHTTPRequestHandler).serve_forever()"  # noqa: E501

    def pod(name: str, command: list[str], restart: str, probe: bool = False) -> dict[str, Any]:
        container: dict[str, Any] = {"name": "main", "image": "none", "command": command}
        if probe:
            container["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": node,
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 3,
                "automountServiceAccountToken": False,
                "containers": [container],
            },
        }

    client.create(from_dict(pod("web", ["python3", "-c", serve], "Always", probe=True)))
    client.create(from_dict(pod("fails", ["sh", "-c", "exit 3"], "Never")))
    client.create(from_dict(pod("crashes", ["sh", "-c", "exit 1"], "Always")))

    def ready(name: str) -> Pod | None:
        found = client.get(Pod, name, namespace=namespace)
        conds = {c.type: c.status for c in (found.status.conditions or [])} if found.status else {}
        return found if conds.get("Ready") == "True" else None

    web = wait_for("web Ready from its probe", lambda: ready("web"), timeout=30)
    ip = web.status.podIP
    assert ip.startswith("127.") and ip != "127.0.0.1" and web.status.phase == "Running"
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as answer:
        assert answer.status == 200

    def phase(name: str) -> str:
        return client.get(Pod, name, namespace=namespace).status.phase or ""

    wait_for("fails Failed", lambda: phase("fails") == "Failed", timeout=30)
    state = client.get(Pod, "fails", namespace=namespace).status.containerStatuses[0].state
    assert state.terminated is not None and state.terminated.exitCode == 3

    def restarted() -> bool:
        statuses = client.get(Pod, "crashes", namespace=namespace).status.containerStatuses or []
        return bool(statuses) and statuses[0].restartCount >= 2

    wait_for("crashes restarted", restarted, timeout=30)

    # Deleted: SIGTERM, the process exits, then the pod is gone.
    web_groups = kubelet.pids(namespace, "web")
    assert web_groups
    client.delete(Pod, "web", namespace=namespace)

    def gone(name: str) -> bool:
        try:
            client.get(Pod, name, namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    wait_for("web gone", lambda: gone("web"), timeout=30)
    assert not any(group_alive(pgid) for pgid in web_groups)

    # A process that ignores SIGTERM is killed once the grace period (3 s) is over, not before.
    client.create(from_dict(pod("stubborn", ["sh", "-c", "trap '' TERM; sleep 120"], "Always")))
    wait_for("stubborn running", lambda: kubelet.pids(namespace, "stubborn"), timeout=30)
    stubborn_groups = kubelet.pids(namespace, "stubborn")
    began = time.monotonic()
    client.delete(Pod, "stubborn", namespace=namespace)
    wait_for("stubborn gone", lambda: gone("stubborn"), timeout=30)
    assert 3.0 <= time.monotonic() - began < 15.0
    assert not any(group_alive(pgid) for pgid in stubborn_groups)


# -- end to end ------------------------------------------------------------------------------------


def test_completions_flow_through_the_router_to_an_operator_managed_serving(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    client = cp.client()
    install_crds(client, PHALANX_CRDS)
    namespace = cp.new_namespace("sim")
    manifest = sim_serving(namespace, "chat", kubelet.pool(namespace, 2), replicas=2)
    client.create(ModelServingResource.from_dict(manifest))
    entries = {f"{namespace}/chat-{g}-sim-0-0" for g in range(2)}

    with (
        router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url),
        operator_process(cp, namespace, tmp_path),
    ):
        wait_for("chat Available", lambda: available(cp, namespace, "chat", 2), timeout=90)
        seen = eventually("both entries routable", url, lambda eps: entries <= routable_in(eps), timeout=30)
        for name in entries:
            assert seen[name]["url"].startswith("http://127.")
        for _ in range(6):
            assert complete(url)

        # kill -9 of a worker's process under streaming load: its role instance is made again, the
        # other group is left alone, and clients see only errors a retry cures.
        before = {name: p.metadata.uid for name, p in pods_of(cp, namespace).items() if p.metadata}
        with StreamingLoad(url, MODEL) as load:
            wait_for("traffic flowing", lambda: load.tally.succeeded >= 10, timeout=30)
            (victim,) = kubelet.pids(namespace, "chat-1-sim-0-1")
            os.killpg(victim, signal.SIGKILL)

            def recreated() -> bool:
                now = pods_of(cp, namespace)
                return all(
                    name in now and now[name].metadata is not None and now[name].metadata.uid != before[name]
                    for name in ("chat-1-sim-0-0", "chat-1-sim-0-1")
                )

            wait_for("group 1's role instance recreated", recreated, timeout=60)
            wait_for("chat Available again", lambda: available(cp, namespace, "chat", 2), timeout=60)
            eventually(
                "both entries routable again", url, lambda eps: entries <= routable_in(eps), timeout=30
            )
            served = load.tally.succeeded
            wait_for("traffic after recovery", lambda: load.tally.succeeded >= served + 10, timeout=30)
        kept = pods_of(cp, namespace)["chat-0-sim-0-0"].metadata
        assert kept is not None and kept.uid == before["chat-0-sim-0-0"]
        tally = load.tally
        print(f"under load: {tally.succeeded} succeeded, {tally.cured} after a retry; errors: {tally.errors}")
        assert tally.failed == 0, tally.errors
