"""`phalanx operator` on the real control plane: the seed manifest becomes gang-scheduled pods, a status."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.resources.core_v1 import Pod, Service

from phalanx.api import labels as L
from phalanx.runtimes.kubernetes.resources import ModelServingResource, VolcanoPodGroup
from tests.cluster.conftest import ControlPlane, free_port, install_crds, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "deploy" / "crds"


@contextlib.contextmanager
def operator(cp: ControlPlane, namespace: str, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = workdir / f"operator-{namespace}.log"
    command = [
        sys.executable, "-m", "phalanx", "operator", "--kubeconfig", str(cp.kubeconfig),
        "--namespace", namespace, "--lease-namespace", namespace, "--health-port", str(free_port()),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if process.returncode not in (0, -signal.SIGTERM):
            print(log.read_text(errors="replace")[-5000:])


def seed_manifest(namespace: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "llama-multinode.yaml").read_text())
    data["metadata"]["namespace"] = namespace
    return data


def test_the_seed_manifest_becomes_an_available_gang_scheduled_group(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    client = control_plane.client()
    install_crds(client, CRDS)
    namespace = control_plane.new_namespace("seed")
    for index in range(4):  # the manifest's pods each ask for 8 GPUs, 125 CPUs and 1124Gi
        control_plane.add_gpu_node(f"{namespace}-n{index}", gpus=8, cpu="128", memory="1200Gi")
    manifest = seed_manifest(namespace)
    client.create(ModelServingResource.from_dict(manifest))
    with operator(control_plane, namespace, tmp_path):

        def available() -> bool:
            ms = client.get(ModelServingResource, "llama-multinode", namespace=namespace)
            status = ms.to_dict().get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return conditions.get("Available") == "True" and status.get("availableReplicas") == 1

        wait_for("llama-multinode Available", available, timeout=90)

    pods = {p.metadata.name: p for p in client.list(Pod, namespace=namespace)}
    assert sorted(pods) == [
        "llama-multinode-0-405b-0-0",
        "llama-multinode-0-405b-0-1",
        "llama-multinode-0-405b-1-0",
        "llama-multinode-0-405b-1-1",
    ]
    entry = pods["llama-multinode-0-405b-0-0"]
    assert entry.metadata is not None and entry.metadata.labels is not None
    assert entry.metadata.labels[L.ENTRY] == "true"
    assert entry.metadata.annotations is not None
    assert entry.metadata.annotations[L.VOLCANO_GROUP_ANNOTATION] == "llama-multinode-0"
    assert entry.spec is not None and entry.spec.schedulerName == "volcano"
    env = {e.name: e.value for e in entry.spec.containers[0].env or []}
    assert env["ENTRY_ADDRESS"] == f"llama-multinode-0-405b-0-0.{namespace}"
    assert env["GROUP_SIZE"] == "2"
    services = {s.metadata.name for s in client.list(Service, namespace=namespace)}
    assert {"llama-multinode-0-405b-0-0", "llama-multinode-0-405b-1-0", "llama-multinode"} <= services
    gang = client.get(VolcanoPodGroup, "llama-multinode-0", namespace=namespace).to_dict()
    assert gang["spec"]["minMember"] == 2  # minRoleReplicas 405b: 1 x (entry + worker)
    assert {p["name"] for p in gang["spec"]["subGroupPolicy"]} == {"405b"}
