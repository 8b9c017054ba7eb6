"""A prefill/decode ModelServing on the real control plane: Volcano gang with a subgroup per role, and a
role rolling update of decode that leaves prefill alone, with 0 failed requests under streaming load.

The operator manages `phalanx sim` engines with vLLM's NixlConnector flags on process nodes
(`procpods.py`); async `openai` clients stream long prompts through `phalanx router` (Kubernetes
discovery) with no retries, as in `test_traffic_e2e.py`, so every request goes prefill then decode.
Each pod asks for more than half a node's CPU, so the four pods need four nodes: with three, Volcano
must bind none of them (a scheduler placing pod by pod would bind three).
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from lightkube.resources.core_v1 import Pod

from phalanx.api import labels as L
from phalanx.kube.resources import ModelServingResource, VolcanoPodGroup
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.load import StreamingLoad, Truncated
from tests.cluster.procpods import ProcessKubelet, process_kubelet
from tests.cluster.routers import eventually, routable_in, router_process
from tests.cluster.servings import MODEL, available, merge_patch, pods_of, status_of
from tests.component.test_pd_up import all_disaggregated, scrape

pytestmark = pytest.mark.cluster

NAME = "pd"
GRACE = 30  # the entry's termination grace period: the operator's drain bound
MAX_TOKENS = 128  # about 1.5 s per stream at the simulator's default inter-token latency
CLIENTS = 4
CPU = "33"  # of a process node's 64: one pod per node
PREFILL = [f"{NAME}-0-prefill-0-0", f"{NAME}-0-prefill-0-1"]  # one instance, entry + worker
DECODE = [f"{NAME}-0-decode-0-0", f"{NAME}-0-decode-1-0"]  # two single-pod instances
POD_IP = "status.podIP"
BOUND_WATCH = 6.0  # seconds (about 12 Volcano cycles) in which nothing of the short gang may bind


class LongPrompts(StreamingLoad):
    """Streams of long, unique prompts: the PD router sends each through prefill, then decode."""

    async def _stream(self, client: openai.AsyncOpenAI) -> None:
        notes = " ".join(uuid.uuid4().hex[:8] for _ in range(300))
        stream = await client.completions.create(
            model=self.model, prompt=f"Summarise: {notes}", max_tokens=self.max_tokens, stream=True
        )
        finished = False
        async for chunk in stream:
            finished = finished or any(choice.finish_reason for choice in chunk.choices)
        if not finished:
            raise Truncated("the stream ended without a finish reason")


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


def engine(pool: str, kv_role: str, *, entry: bool, seed: int) -> dict[str, Any]:
    """A pod template of one `phalanx sim` process with vLLM's NixlConnector flags (`kv_role` gives the
    role its PD kind); only the entry serves HTTP and is probed."""
    connector = json.dumps({"kv_connector": "NixlConnector", "kv_role": kv_role})
    args = ["--served-model-name", MODEL, "--port", "8000", "--join-port", "8001"]
    container: dict[str, Any] = {
        "name": "engine",
        "image": "phalanx:test",
        "command": ["phalanx", "sim"],
        # An engine that stops at once on SIGTERM: only the operator's drain keeps streams whole.
        "args": [*args, "--kv-transfer-config", connector, "--drain-timeout", "0", "--seed", str(seed)],
        # The side channel the decode engines pull KV from: the pod's own address.
        "env": [{"name": "VLLM_NIXL_SIDE_CHANNEL_HOST", "valueFrom": {"fieldRef": {"fieldPath": POD_IP}}}],
        "ports": [{"name": "http", "containerPort": 8000}, {"name": "join", "containerPort": 8001}],
        "resources": {"requests": {"cpu": CPU}},
    }
    if entry:
        container["readinessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1}
    return {
        "spec": {
            "nodeSelector": {"phalanx.dev/pool": pool},
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": GRACE,
            "containers": [container],
        }
    }


def pd_serving(namespace: str, pool: str) -> dict[str, Any]:
    """One ServingGroup: prefill (1 instance of entry + worker) and decode (2 single-pod instances),
    gang-scheduled by Volcano, rolled role by role."""
    prefill = {
        "name": "prefill",
        "replicas": 1,
        "workerReplicas": 1,
        "entryTemplate": engine(pool, "kv_producer", entry=True, seed=0),
        "workerTemplate": engine(pool, "kv_producer", entry=False, seed=0),
    }
    decode = {
        "name": "decode",
        "replicas": 2,
        "workerReplicas": 0,
        "maxUnavailable": 1,
        "entryTemplate": engine(pool, "kv_consumer", entry=True, seed=0),
    }
    return {
        "apiVersion": L.GROUP_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "schedulerName": "volcano",
            "recoveryPolicy": "RoleRecreate",
            "rolloutStrategy": {"type": "RoleRollingUpdate"},
            "template": {"roles": [prefill, decode]},
        },
    }


def decode_seed_changed(manifest: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that changes the decode template only (`--seed 1`); it replaces the roles list."""
    changed = copy.deepcopy(manifest)
    [decode] = [role for role in changed["spec"]["template"]["roles"] if role["name"] == "decode"]
    decode["entryTemplate"]["spec"]["containers"][0]["args"][-1] = "1"
    return {"spec": changed["spec"]}


def seed_of(pod: Pod) -> str:
    assert pod.spec is not None
    args = list(pod.spec.containers[0].args or [])
    return args[args.index("--seed") + 1]


def bound(cp: ControlPlane, namespace: str) -> list[str]:
    return sorted(name for name, pod in pods_of(cp, namespace).items() if pod.spec and pod.spec.nodeName)


def unschedulable(cp: ControlPlane, namespace: str) -> bool:
    gang = cp.client().get(VolcanoPodGroup, f"{NAME}-0", namespace=namespace).to_dict()
    conditions = (gang.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Unschedulable" and c["status"] == "True" for c in conditions)


def identity(cp: ControlPlane, kubelet: ProcessKubelet, namespace: str, names: list[str]) -> dict[str, Any]:
    """Per pod: uid, restart counts and the process groups running it; equal means untouched."""
    pods = pods_of(cp, namespace)
    found: dict[str, Any] = {}
    for name in names:
        pod = pods[name]
        assert pod.metadata is not None and pod.status is not None
        restarts = [c.restartCount for c in pod.status.containerStatuses or []]
        found[name] = (pod.metadata.uid, restarts, kubelet.pids(namespace, name))
    return found


def gang_of(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    gang = cp.client().get(VolcanoPodGroup, f"{NAME}-0", namespace=namespace)
    spec: dict[str, Any] = gang.to_dict()["spec"]
    return spec


def expected_sub_groups() -> list[dict[str, Any]]:
    def policy(role: str, size: int, instances: int) -> dict[str, Any]:
        return {
            "name": role,
            "subGroupSize": size,
            "minSubGroups": instances,
            "labelSelector": {"matchLabels": {L.NAME: NAME, L.ROLE: role}},
            "matchLabelKeys": [L.ROLE_INDEX],
        }

    return [policy("prefill", 2, 1), policy("decode", 1, 2)]


def test_pd_gang_binds_whole_and_a_decode_rollout_leaves_prefill_untouched_under_load(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("pd")
    pool = kubelet.pool(namespace, 3)  # one node short of the gang
    manifest = pd_serving(namespace, pool)
    cp.client().create(ModelServingResource.from_dict(manifest))
    with (
        router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url),
        operator_process(cp, namespace, tmp_path),
    ):
        wait_for("the gang found unschedulable", lambda: unschedulable(cp, namespace), timeout=60)
        gang = gang_of(cp, namespace)
        assert gang["minMember"] == 4
        assert gang["subGroupPolicy"] == expected_sub_groups()
        assert sorted(pods_of(cp, namespace)) == sorted(DECODE + PREFILL)
        deadline = time.monotonic() + BOUND_WATCH
        while time.monotonic() < deadline:
            assert bound(cp, namespace) == [], "Volcano bound part of a gang that does not fit"
            time.sleep(0.5)

        kubelet.add_node(f"{namespace}-p3", {"phalanx.dev/pool": pool})
        wait_for("the group Available", lambda: available(cp, namespace, NAME, 1), timeout=90)
        assert bound(cp, namespace) == sorted(DECODE + PREFILL)
        nodes = {pod.spec.nodeName for pod in pods_of(cp, namespace).values() if pod.spec}
        assert len(nodes) == 4
        roles = {
            name: (pod.metadata.labels or {}).get(L.PD_ROLE)
            for name, pod in pods_of(cp, namespace).items()
            if pod.metadata
        }
        assert roles == {**dict.fromkeys(PREFILL, "prefill"), **dict.fromkeys(DECODE, "decode")}
        entries = {f"{namespace}/{PREFILL[0]}", *(f"{namespace}/{d}" for d in DECODE)}
        eventually("every entry routable", url, lambda eps: entries <= routable_in(eps), timeout=30)

        prefill_before = identity(cp, kubelet, namespace, PREFILL)
        with LongPrompts(url, MODEL, clients=CLIENTS, attempts=1, max_tokens=MAX_TOKENS) as load:
            wait_for("traffic flowing", lambda: load.tally.succeeded >= CLIENTS, timeout=30)
            began, served = time.monotonic(), load.tally.succeeded
            merge_patch(cp, namespace, NAME, decode_seed_changed(manifest))

            def decode_rolled() -> bool:
                pods = pods_of(cp, namespace)
                return (
                    all(name in pods and seed_of(pods[name]) == "1" for name in DECODE)
                    and status_of(cp, namespace, NAME).get("updatedReplicas") == 1
                    and available(cp, namespace, NAME, 1)
                )

            wait_for("decode on the new template", decode_rolled, timeout=120)
            took, during = time.monotonic() - began, load.tally.succeeded - served
            wait_for("traffic after", lambda: load.tally.succeeded >= served + during + CLIENTS, timeout=30)
        routed = scrape(f"{url}/metrics")
        pd_counts = {k: v for k, v in routed.items() if k.startswith("phalanx_router_pd_requests_total")}
        print(f"decode rollout: {took:.1f} s, {during} streams during it, {load.tally.failed} failed")
        print(f"router: {pd_counts}")
        assert load.tally.failed == 0, load.tally.errors
        assert during >= CLIENTS, f"only {during} streams completed during the rollout"
        # Every stream went prefill then decode (none fell back), and no prefill block was leaked.
        all_disaggregated(routed, load.tally.succeeded)
        assert identity(cp, kubelet, namespace, PREFILL) == prefill_before
        assert {seed_of(pod) for name, pod in pods_of(cp, namespace).items() if name in PREFILL} == {"0"}
        prefill_ip = pods_of(cp, namespace)[PREFILL[0]].status.podIP  # type: ignore[union-attr]
        wait_for(
            "the prefill engine's leases all ended",
            lambda: scrape(f"http://{prefill_ip}:8000/metrics").get("phalanx_sim_kv_leased_blocks") == 0,
            timeout=30,
        )
        assert scrape(f"http://{prefill_ip}:8000/metrics").get("phalanx_sim_kv_leaked_blocks") == 0
