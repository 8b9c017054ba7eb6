"""Pod identity on a real control plane: what cluster DNS would serve for Phalanx pods, and what
Kthena's and LeaderWorkerSet's selectors find.

The rendered objects of ModelServings running LWS-style workloads (tests/unit/controller/
lws_workloads.py) and Kthena-style pod affinity are created on kube-apiserver; kube-scheduler and
KWOK place and run the pods (with IPs), and the real endpointslice controller publishes their
Services. The EndpointSlices are what cluster DNS serves from, so the LWS addresses are looked up
in records built from them (tests/unit/controller/kube_dns.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod
from lightkube.resources.discovery_v1 import EndpointSlice

from phalanx.api import ModelServing
from phalanx.controller.desired import steady_state
from tests.cluster.controlplane import ControlPlane, wait_for
from tests.cluster.servings import pool_nodes
from tests.unit.controller import kube_dns
from tests.unit.controller.lws_workloads import llamacpp, llamacpp_rpc_hosts, sglang, tensorrt
from tests.unit.controller.test_kthena_compat import GROUP, ROLE, ROLE_ID, serving

pytestmark = pytest.mark.cluster

Object = dict[str, Any]


def in_namespace(ms: ModelServing, namespace: str) -> ModelServing:
    return ms.model_copy(update={"metadata": ms.metadata.model_copy(update={"namespace": namespace})})


def create_all(client: Client, objects: list[Object], pool: str) -> None:
    for obj in objects:
        if obj["kind"] == "Pod":
            obj["spec"]["nodeSelector"] = {"phalanx.dev/pool": pool}
            obj["spec"]["automountServiceAccountToken"] = False
        client.create(from_dict(obj))


def running_pods(client: Client, namespace: str, count: int) -> dict[str, Object]:
    def check() -> dict[str, Object] | None:
        pods = {p.metadata.name: p.to_dict() for p in client.list(Pod, namespace=namespace) if p.metadata}
        running = {n: p for n, p in pods.items() if (p.get("status") or {}).get("podIP")}
        return running if len(running) == count else None

    found: dict[str, Object] = wait_for(f"{count} pods running with an IP", check, timeout=120)
    return found


def slices_of(client: Client, namespace: str, service: str) -> list[Object]:
    selector = {"kubernetes.io/service-name": service}
    return [s.to_dict() for s in client.list(EndpointSlice, namespace=namespace, labels=selector)]


@pytest.fixture(scope="module")
def lws_cluster(control_plane: ControlPlane) -> tuple[ControlPlane, str, list[Object], dict[str, Object]]:
    namespace = control_plane.new_namespace("ident")
    pool = pool_nodes(control_plane, namespace, 1)
    objects = [
        o for make in (sglang, llamacpp, tensorrt) for o in steady_state(in_namespace(make(), namespace))
    ]
    create_all(control_plane.client(), objects, pool)
    pods = running_pods(control_plane.client(), namespace, sum(o["kind"] == "Pod" for o in objects))
    return control_plane, namespace, objects, pods


def test_endpoint_slices_carry_each_pods_hostname_and_dns_reaches_the_right_pods(
    lws_cluster: tuple[ControlPlane, str, list[Object], dict[str, Object]],
) -> None:
    cp, namespace, objects, pods = lws_cluster
    client = cp.client()
    ips = {name: pod["status"]["podIP"] for name, pod in pods.items()}
    services = [o for o in objects if o["kind"] == "Service"]
    zone_input = []
    for service in services:
        name = service["metadata"]["name"]
        expected = kube_dns.endpoints_from_pods(service, list(pods.values()), ips)
        # The endpointslice controller publishes them shortly after the pods get their IPs.
        real = wait_for(
            f"EndpointSlices of {name}",
            lambda n=name, e=expected: (
                kube_dns.endpoints_from_slices(slices_of(client, namespace, n)) == e and e
            ),
            timeout=60,
        )
        assert real
        zone_input.append((service, kube_dns.endpoints_from_slices(slices_of(client, namespace, name))))
    zone = kube_dns.records(zone_input)

    subdomains = [s for s in services if "serving.phalanx.dev/role-index" not in s["metadata"]["labels"]]
    subdomains = [s for s in subdomains if "serving.phalanx.dev/group-index" in s["metadata"]["labels"]]
    assert len(subdomains) == 6  # 3 ModelServings x 2 groups x 1 role
    published = set()
    for service in subdomains:
        for endpoint in kube_dns.endpoints_from_slices(
            slices_of(client, namespace, service["metadata"]["name"])
        ):
            assert endpoint.hostname == pods[endpoint.pod]["spec"]["hostname"], endpoint
            published.add(endpoint.pod)
    assert published == set(pods)  # every pod, entry and worker, has a DNS name of its own

    for name, pod in pods.items():
        env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env") or []}
        entry = name.rsplit("-", 1)[0] + "-0"
        assert kube_dns.resolve(env["LWS_LEADER_ADDRESS"], namespace, zone) == {ips[entry]}, name
        if name.startswith("llamacpp-") and name == entry:
            hosts = llamacpp_rpc_hosts(env)
            assert [kube_dns.resolve(h, namespace, zone) for h in hosts] == [
                {ips[f"{name[: -len('-0')]}-{i}"]} for i in range(1, 5)
            ]


def test_downward_api_label_paths_exist_and_group_key_finds_one_role_instance(
    lws_cluster: tuple[ControlPlane, str, list[Object], dict[str, Object]],
) -> None:
    cp, namespace, _, pods = lws_cluster
    client = cp.client()
    leaders = [p for name, p in pods.items() if name.startswith("tensorrt-") and name.endswith("-0")]
    assert len(leaders) == 4
    for leader in leaders:
        (ref,) = [e for e in leader["spec"]["containers"][0]["env"] if "valueFrom" in e]
        path = ref["valueFrom"]["fieldRef"]["fieldPath"]
        key = path[len("metadata.labels['") : -len("']")]
        value = leader["metadata"]["labels"][key]  # the label the kubelet would read exists
        # What the TensorRT-LLM leader runs: kubectl get pods -l <group-key>=<value> (Running only).
        found = client.list(Pod, namespace=namespace, labels={key: value}, fields={"status.phase": "Running"})
        instance = leader["metadata"]["name"][: -len("-0")]
        assert sorted(p.metadata.name for p in found if p.metadata) == [f"{instance}-0", f"{instance}-1"]


@pytest.mark.parametrize(
    ("scope", "keys"), [("role instance", [GROUP, ROLE, ROLE_ID]), ("serving group", [GROUP])]
)
def test_kthena_affinity_terms_select_their_scope_on_the_api_server(
    control_plane: ControlPlane, scope: str, keys: list[str]
) -> None:
    namespace = control_plane.new_namespace("kthena")
    pool = pool_nodes(control_plane, namespace, 1)
    client = control_plane.client()
    objects = steady_state(in_namespace(serving(keys), namespace))
    create_all(client, [o for o in objects if o["kind"] == "Pod"], pool)
    for pod in client.list(Pod, namespace=namespace):
        assert pod.metadata is not None and pod.spec is not None and pod.spec.affinity is not None
        (weighted,) = pod.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution
        selector = weighted.podAffinityTerm.labelSelector
        # The API server turns matchLabelKeys into requirements on the pod's own label values.
        merged = {e.key: e.values for e in selector.matchExpressions or []}
        assert merged == {k: [pod.metadata.labels[k]] for k in keys}
        equality = {**(selector.matchLabels or {}), **{k: v[0] for k, v in merged.items()}}
        chosen = sorted(p.metadata.name for p in client.list(Pod, namespace=namespace, labels=equality))
        name = pod.metadata.name
        prefix = name.rsplit("-", 1)[0] if scope == "role instance" else name[: len("pd-0")]
        assert chosen == sorted(
            p.metadata.name
            for p in client.list(Pod, namespace=namespace)
            if p.metadata.name.startswith(prefix + "-")
        ), name
