"""The operator's autoscaler on the real control plane: a policy (observeOnly false, a 1 s period)
on a ModelServing at zero groups starts the first group for a request the router holds, the
request is answered, the policy's status says what it decided and why, and a second policy on the
same ModelServing is refused with a condition naming the first. Real engines on process nodes.

Then, with groups that stay Pending (no node matches them), what needs no engine: observeOnly
moves the status and not the spec; a policy on roles sets `roles[].replicas` (over one group,
and over two, where a decode slice is an instance in each); and an operator
started after another one goes on from the history in the status without scaling again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Event as CoreEvent
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from phalanx.api import labels as L
from phalanx.autoscale.from_api import parse_time
from phalanx.autoscale.placement_cluster import cluster_placeable, cluster_room
from phalanx.kube.resources import AutoscalingPolicyResource, ModelServingResource, as_dict
from phalanx.operator.autoscaler import router_page_urls
from phalanx.operator.room import ClusterRoom
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.procpods import ProcessKubelet, process_kubelet
from tests.cluster.routers import router_process
from tests.cluster.servings import MODEL, sim_serving
from tests.cluster.test_router_zero import demand
from tests.component.router.held import ChatInBackground

pytestmark = pytest.mark.cluster


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "no-node-has-this-pool"  # the groups' pods stay Pending: only the counts are looked at


def policy(namespace: str, name: str, target: str, *, low: int = 0, observe: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "AutoscalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "period": "1s",
            "observeOnly": observe,
            "metrics": [{"name": "num_requests_waiting", "targetValue": 4}],
            "homogeneousTarget": {
                "minReplicas": low,
                "maxReplicas": 2,
                "target": {"targetRef": {"kind": "ModelServing", "name": target}},
            },
        },
    }


def status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    found = as_dict(cp.client().get(AutoscalingPolicyResource, name, namespace=namespace))
    return found.get("status") or {}


def condition(cp: ControlPlane, namespace: str, name: str, type_: str) -> dict[str, Any]:
    return next((c for c in status(cp, namespace, name).get("conditions") or [] if c["type"] == type_), {})


def test_a_policy_starts_the_first_group_for_a_held_request_and_a_second_policy_is_refused(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("autoscale")
    manifest = sim_serving(namespace, "chat", kubelet.pool(namespace, 1), replicas=0)
    cp.client().create(ModelServingResource.from_dict(manifest))
    with router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url):
        metrics = ("--router-metrics-url", f"{url}/metrics")
        with operator_process(cp, namespace, tmp_path, extra_args=metrics):
            wait_for("the model declared", lambda: demand(url).get("declared") is True, timeout=30)
            cp.client().create(AutoscalingPolicyResource.from_dict(policy(namespace, "chat-a", "chat")))
            wait_for(
                "a decision at zero",
                lambda: condition(cp, namespace, "chat-a", "Ready").get("status") == "True",
                timeout=30,
            )
            assert status(cp, namespace, "chat-a")["homogeneousStatus"]["desiredReplicas"] == 0
            chat = ChatInBackground(f"{url}/v1", MODEL, timeout_s=120)
            assert chat.answer()  # held until the group the policy started was ready
            stored = as_dict(cp.client().get(ModelServingResource, "chat", namespace=namespace))
            assert stored["spec"]["replicas"] == 1
            scaled = status(cp, namespace, "chat-a")["homogeneousStatus"]
            assert scaled["desiredReplicas"] == 1
            assert scaled["reason"]
            assert scaled["history"][-1]["previous"] == 0

            cp.client().create(AutoscalingPolicyResource.from_dict(policy(namespace, "chat-b", "chat")))
            wait_for(
                "the second policy refused",
                lambda: condition(cp, namespace, "chat-b", "ConflictingAutoscaler").get("status") == "True",
                timeout=30,
            )
            refused = condition(cp, namespace, "chat-b", "ConflictingAutoscaler")
            assert "chat-a" in refused["message"]
            assert status(cp, namespace, "chat-a")["homogeneousStatus"]["desiredReplicas"] == 1


def replicas(cp: ControlPlane, namespace: str, name: str) -> int:
    return int(as_dict(cp.client().get(ModelServingResource, name, namespace=namespace))["spec"]["replicas"])


def role_replicas(cp: ControlPlane, namespace: str, name: str) -> dict[str, int]:
    stored = as_dict(cp.client().get(ModelServingResource, name, namespace=namespace))
    return {r["name"]: r["replicas"] for r in stored["spec"]["template"]["roles"]}


def events(cp: ControlPlane, namespace: str, reason: str) -> list[str]:
    found = [as_dict(e) for e in cp.client().list(CoreEvent, namespace=namespace)]
    return [str(e.get("message")) for e in found if e.get("reason") == reason]


def pd_serving(namespace: str, groups: int = 1) -> dict[str, Any]:
    """examples/quickstart-pd.yaml at `groups` groups with decode at 1 instance, its pods kept Pending."""
    pd: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart-pd.yaml").read_text())
    pd["metadata"]["namespace"] = namespace
    pd["spec"]["replicas"] = groups
    for role in pd["spec"]["template"]["roles"]:
        role["entryTemplate"]["spec"]["nodeSelector"] = {"phalanx.dev/pool": NOWHERE}
        if role["name"] == "decode":
            role["replicas"] = 1
    return pd


def roles_policy(namespace: str) -> dict[str, Any]:
    found = policy(namespace, "pd", "quickstart-pd")
    del found["spec"]["homogeneousTarget"]
    found["spec"]["disaggregatedTarget"] = {
        "targetRef": {"kind": "ModelServing", "name": "quickstart-pd"},
        "roles": {
            "prefill": {"minReplicas": 1, "maxReplicas": 1},
            "decode": {"minReplicas": 2, "maxReplicas": 3},
        },
    }
    return found


def pending_servings(cp: ControlPlane, prefix: str, *servings: str) -> str:
    """A new namespace with a ModelServing at 0 groups, kept Pending, per name (the PD example for
    "quickstart-pd")."""
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace(prefix)
    for name in servings:
        made = pd_serving(namespace) if name == "quickstart-pd" else sim_serving(namespace, name, NOWHERE, 0)
        cp.client().create(ModelServingResource.from_dict(made))
    return namespace


def test_observe_only_moves_the_status_not_the_spec_and_a_policy_on_roles_scales_decode(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = pending_servings(cp, "autoscale-watch", "watch", "quickstart-pd")
    with operator_process(cp, namespace, tmp_path):
        # minReplicas 1 over a serving at 0 asks for 1 at once; observeOnly only says so.
        watching = policy(namespace, "watch", "watch", low=1, observe=True)
        cp.client().create(AutoscalingPolicyResource.from_dict(watching))
        cp.client().create(AutoscalingPolicyResource.from_dict(roles_policy(namespace)))
        wait_for(
            "decode scaled to 2",
            lambda: role_replicas(cp, namespace, "quickstart-pd") == {"prefill": 1, "decode": 2},
            timeout=30,
        )
        wait_for("the observation reported", lambda: events(cp, namespace, "AutoscaleObserved"), timeout=30)
        # The spec (or the event) is written before the status: wait for the status too.
        wait_for(
            "the status written", lambda: "homogeneousStatus" in status(cp, namespace, "watch"), timeout=10
        )
        wait_for(
            "the roles' status", lambda: "disaggregatedStatus" in status(cp, namespace, "pd"), timeout=10
        )
        observed = status(cp, namespace, "watch")["homogeneousStatus"]
        assert observed["desiredReplicas"] == 1
        assert observed["reason"].endswith("(observe only: not applied).")
        (message,) = events(cp, namespace, "AutoscaleObserved")
        assert message.startswith("AutoscalingPolicy watch would set replicas 0 -> 1: ")
        time.sleep(2)  # two more passes: the spec stays, and the observation is not repeated
        assert replicas(cp, namespace, "watch") == 0
        assert len(events(cp, namespace, "AutoscaleObserved")) == 1

        roles = {r["name"]: r for r in status(cp, namespace, "pd")["disaggregatedStatus"]["roles"]}
        assert (roles["decode"]["desiredReplicas"], roles["prefill"]["desiredReplicas"]) == (2, 1)
        assert roles["decode"]["history"][-1]["desired"] == 2
        assert condition(cp, namespace, "pd", "Ready")["status"] == "True"
        (scaled,) = events(cp, namespace, "Autoscaled")
        assert scaled.startswith("AutoscalingPolicy pd set role decode replicas 1 -> 2: ")


def test_a_policy_on_roles_over_two_groups_adds_one_decode_instance_to_each(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A role's unit is a slice: decode 1 -> 2 (its minReplicas) puts a second instance in both
    groups, and the core counts two slices, not four instances."""
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("autoscale-slices")
    cp.client().create(ModelServingResource.from_dict(pd_serving(namespace, groups=2)))
    with operator_process(cp, namespace, tmp_path):
        cp.client().create(AutoscalingPolicyResource.from_dict(roles_policy(namespace)))
        wait_for(
            "decode scaled to 2",
            lambda: role_replicas(cp, namespace, "quickstart-pd") == {"prefill": 1, "decode": 2},
            timeout=30,
        )

        def decode_instances() -> set[tuple[str, str]]:
            found = [as_dict(p) for p in cp.client().list(Pod, namespace=namespace)]
            labels = [p["metadata"]["labels"] for p in found]
            return {(x[L.GROUP_INDEX], x[L.ROLE_INDEX]) for x in labels if x.get(L.ROLE) == "decode"}

        wait_for(
            "a second decode instance in each group",
            lambda: decode_instances() == {("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")},
            timeout=30,
        )

        def counted() -> dict[str, Any]:
            roles = (status(cp, namespace, "pd").get("disaggregatedStatus") or {}).get("roles") or []
            return {r["name"]: r for r in roles}.get("decode") or {}

        time.sleep(2)  # passes that see the new instances
        wait_for("the slices counted", lambda: counted().get("currentReplicas") == 2, timeout=10)
        assert counted()["desiredReplicas"] == 2
        assert condition(cp, namespace, "pd", "Ready")["status"] == "True"
        (scaled,) = events(cp, namespace, "Autoscaled")
        assert scaled.startswith("AutoscalingPolicy pd set role decode replicas 1 -> 2: ")
        assert replicas(cp, namespace, "quickstart-pd") == 2


def test_an_operator_started_after_another_goes_on_from_the_history_in_the_status(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = pending_servings(cp, "autoscale-restart", "keep")
    cp.client().create(AutoscalingPolicyResource.from_dict(policy(namespace, "keep", "keep", low=1)))
    with operator_process(cp, namespace, tmp_path, name="first"):
        wait_for("scaled to 1", lambda: replicas(cp, namespace, "keep") == 1, timeout=30)
        wait_for(
            "the record written",
            lambda: (status(cp, namespace, "keep").get("homogeneousStatus") or {}).get("history"),
            timeout=30,
        )
    before = status(cp, namespace, "keep")["homogeneousStatus"]
    # 0 -> 1, once more while the group's pods were not there yet (the spec held 1: not set again).
    assert {(r["previous"], r["desired"]) for r in before["history"]} == {(0, 1)}
    assert len(events(cp, namespace, "Autoscaled")) == 1
    stopped = time.time()

    def decided_since_the_restart() -> bool:
        recommendations = (status(cp, namespace, "keep").get("homogeneousStatus") or {}).get(
            "recommendations", []
        )
        return any(parse_time(r["time"]) > stopped for r in recommendations)

    with operator_process(cp, namespace, tmp_path, name="second"):
        wait_for("a decision by the second operator", decided_since_the_restart, timeout=40)
        time.sleep(1.5)  # and another pass
        after = status(cp, namespace, "keep")["homogeneousStatus"]
        assert after["history"] == before["history"]  # the record the first one wrote, kept
        kept = {r["time"] for r in before["recommendations"]}
        assert kept <= {r["time"] for r in after["recommendations"]}  # its window too
        assert after["desiredReplicas"] == 1
        assert replicas(cp, namespace, "keep") == 1
        assert len(events(cp, namespace, "Autoscaled")) == 1  # not scaled again


async def test_the_room_on_the_nodes_is_their_allocatable_gpus_less_the_bound_pods_requests(
    control_plane: ControlPlane,
) -> None:
    """What the operator lists for `placeable` and the roles' shared room, against the real API
    server: a KWOK node's 8 GPUs less a bound pod's 3; a pod no node takes (Pending) holds nothing."""
    cp = control_plane
    namespace = cp.new_namespace("autoscale-room")
    node = f"gpu-{namespace}"
    cp.add_gpu_node(node, gpus=8)

    def gpu_pod(name: str, gpus: int, on: str | None) -> dict[str, Any]:
        limits = {"nvidia.com/gpu": str(gpus)}
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x", "resources": {"limits": limits}}]}
        if on is not None:
            spec["nodeName"] = on
        else:  # the scheduler would bind it to the node, which has room
            spec["nodeSelector"] = {"phalanx.dev/pool": NOWHERE}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }

    try:
        for made in (gpu_pod("bound", 3, node), gpu_pod("waiting", 4, None)):
            cp.client().create(from_dict(made))
        client = AsyncClient(KubeConfig.from_file(cp.kubeconfig))
        try:
            free = await ClusterRoom(client).free()
        finally:
            await client.close()
        assert free is not None
        assert free[node] == {"nvidia.com/gpu": 5}
        two = [{"nvidia.com/gpu": 2}]
        assert cluster_placeable(two, {node: free[node]}, unplaced=1) == 1
        # Prefill and decode each see 2 GPUs' worth; together, beside decode's waiting unit, one fits.
        room = cluster_room({node: free[node]}, {"prefill": two, "decode": two}, {"decode": 1})
        assert room is not None
        assert room({"prefill": 1}) and room({"decode": 1})
        assert not room({"prefill": 1, "decode": 1})
    finally:
        cp.client().delete(Node, node)


async def test_the_router_pages_are_those_of_the_ready_pods_behind_the_routers_service(
    control_plane: ControlPlane,
) -> None:
    """What the operator reads for a Service URL, against the real API server: the Service's
    selector and target port, the ready pods' own addresses; any other URL as it is."""
    cp = control_plane
    namespace = cp.new_namespace("autoscale-routers")
    selector = {"app.kubernetes.io/component": "router", "app.kubernetes.io/instance": namespace}
    port = {"port": 8000, "targetPort": "http"}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "router", "namespace": namespace}}
    cp.client().create(from_dict({**service, "spec": {"selector": selector, "ports": [port]}}))
    for name, ip, ready in (("router-a", "10.1.0.5", "True"), ("router-b", "10.1.0.6", "False")):
        container = {"name": "router", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": selector},
            "spec": {"containers": [container], "nodeSelector": {"phalanx.dev/pool": NOWHERE}},
        }
        cp.client().create(from_dict(pod))
        conditions = [{"type": "Ready", "status": ready}]
        written = {"status": {"podIP": ip, "podIPs": [{"ip": ip}], "conditions": conditions}}
        cp.client().patch(Pod.Status, name, written, namespace=namespace, patch_type=PatchType.MERGE)
    client = AsyncClient(KubeConfig.from_file(cp.kubeconfig))
    try:
        url = f"http://router.{namespace}.svc:8000/metrics"
        assert await router_page_urls(client, url) == {"router-a": "http://10.1.0.5:8080/metrics"}
        missing = f"http://nothing.{namespace}.svc:8000/metrics"
        assert await router_page_urls(client, missing) == {missing: missing}
        plain = "http://127.0.0.1:9/metrics"
        assert await router_page_urls(client, plain) == {plain: plain}
    finally:
        await client.close()
