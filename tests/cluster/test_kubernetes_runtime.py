"""The Kubernetes runtime adapter, leader election and the operator's cached reads, against the real
control plane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event as CoreEvent
from lightkube.resources.core_v1 import Pod

from phalanx.api import labels as L
from phalanx.controller.actions import Event
from phalanx.controller.observed import pod_state
from phalanx.kube.resources import ModelDeploymentResource, ModelServingResource
from phalanx.operator.leader import Elector, Timing
from phalanx.operator.manager import Key, Operator, OperatorOptions
from phalanx.runtimes.kubernetes.runtime import KubernetesRuntime
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, free_port, install_crds
from tests.cluster.servings import small_serving

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def client(control_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    c = AsyncClient(KubeConfig.from_file(control_plane.kubeconfig), field_manager="phalanx")
    try:
        yield c
    finally:
        await c.close()


def labelled_pod(name: str, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {L.NAME: "demo", L.GROUP_INDEX: "0", L.ROLE: "r", L.ROLE_INDEX: "0", L.POD_INDEX: "0"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "engine", "image": "engine:v1"}],
        },
    }


async def test_runtime_creates_lists_annotates_and_deletes(
    control_plane: ControlPlane, client: AsyncClient
) -> None:
    namespace = control_plane.new_namespace("rt")
    changes: list[tuple[str, str]] = []
    runtime = KubernetesRuntime(client, on_change=lambda ns, name: changes.append((ns, name)))
    await runtime.start()
    try:
        assert "scheduling.volcano.sh/v1beta1" in runtime.gang_apis
        pod = labelled_pod("demo-0-r-0-0", namespace)
        await runtime.create(pod)
        await runtime.create(pod)  # AlreadyExists is fine
        listed = await runtime.list_objects("Pod", namespace, {L.NAME: "demo"})
        assert [p["metadata"]["name"] for p in listed] == ["demo-0-r-0-0"]
        state = pod_state(listed[0])
        assert state is not None and state.group_index == 0

        await runtime.annotate("Pod", namespace, "demo-0-r-0-0", {"example.com/a": "1"})
        await runtime.annotate(
            "Pod", namespace, "demo-0-r-0-0", {"example.com/a": None, "example.com/b": "2"}
        )
        (annotated,) = await runtime.list_objects("Pod", namespace, {L.NAME: "demo"})
        annotations = annotated["metadata"]["annotations"]
        assert "example.com/a" not in annotations and annotations["example.com/b"] == "2"

        gang = {
            "apiVersion": L.VOLCANO_PODGROUP_API,
            "kind": "PodGroup",
            "metadata": {
                "name": "demo-0",
                "namespace": namespace,
                "labels": {L.NAME: "demo", L.GROUP_INDEX: "0"},
            },
            "spec": {"minMember": 1},
        }
        await runtime.create(gang)
        gang["spec"] = {"minMember": 2}
        await runtime.apply(gang)
        (stored,) = await runtime.list_objects("PodGroup", namespace, {L.NAME: "demo"})
        assert stored["spec"]["minMember"] == 2

        await runtime.record_event(namespace, "demo", Event("Normal", "GroupCreated", "created group demo-0"))
        events = [e async for e in client.list(CoreEvent, namespace=namespace)]
        assert any(
            e.reason == "GroupCreated" and e.source and e.source.component == "phalanx-operator"
            for e in events
        )

        await runtime.delete("Pod", namespace, "demo-0-r-0-0")
        await runtime.delete("Pod", namespace, "demo-0-r-0-0")  # NotFound is fine
        await runtime.delete("PodGroup", namespace, "demo-0")
        await asyncio.wait_for(runtime.wait_for_change(5), 6)
        deadline = time.monotonic() + 5
        while (namespace, "demo") not in changes:
            assert time.monotonic() < deadline, "the watch did not report our pod"
            await asyncio.sleep(0.1)
    finally:
        await runtime.close()


async def test_one_leader_at_a_time_and_failover(control_plane: ControlPlane, client: AsyncClient) -> None:
    namespace = control_plane.new_namespace("lease")
    # Short enough for a quick test, long enough that a loaded 2-core machine renews in time.
    timing = Timing(lease_duration=8, renew_deadline=6, retry_period=1)
    first = Elector(client, name="phalanx-operator", namespace=namespace, identity="first", timing=timing)
    second = Elector(client, name="phalanx-operator", namespace=namespace, identity="second", timing=timing)
    electors = {"first": first, "second": second}
    runs = {name: asyncio.create_task(e.run()) for name, e in electors.items()}
    try:
        # Both race to create the Lease: exactly one wins and leads.
        waits = [asyncio.create_task(e.leading.wait()) for e in electors.values()]
        await asyncio.wait(waits, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        leader = next(name for name, e in electors.items() if e.leading.is_set())
        follower = "second" if leader == "first" else "first"
        await asyncio.sleep(3)
        assert not electors[follower].leading.is_set()  # one leader at a time
        lease = await client.get(Lease, "phalanx-operator", namespace=namespace)
        assert lease.spec is not None and lease.spec.holderIdentity == leader

        runs[leader].cancel()  # the leader stops renewing (a crash), without releasing
        await asyncio.wait_for(electors[follower].leading.wait(), 30)
        lease = await client.get(Lease, "phalanx-operator", namespace=namespace)
        assert lease.spec is not None and lease.spec.holderIdentity == follower
        assert lease.spec.leaseTransitions == 1

        await electors[follower].release()  # a clean shutdown hands over at once
        lease = await client.get(Lease, "phalanx-operator", namespace=namespace)
        assert lease.spec is not None and lease.spec.holderIdentity is None
    finally:
        for run in runs.values():
            run.cancel()
        await asyncio.gather(*runs.values(), return_exceptions=True)


async def test_reconcile_reads_come_from_the_informers_once_they_have_listed(
    control_plane: ControlPlane, client: AsyncClient
) -> None:
    namespace = control_plane.new_namespace("inf")
    runtime = KubernetesRuntime(client)
    lists: list[str] = []
    real_list = client.list

    def counting_list(resource: Any, *args: Any, **kwargs: Any) -> Any:
        lists.append(resource.__name__)
        return real_list(resource, *args, **kwargs)

    await runtime.start()
    try:
        deadline = time.monotonic() + 20
        readers = [i for kind, i in runtime._informers.items() if kind != "ModelServing"]
        while not all(i.synced for i in readers):
            assert time.monotonic() < deadline, "the informers did not list"
            await asyncio.sleep(0.1)
        client.list = counting_list  # type: ignore[method-assign]
        await runtime.create(labelled_pod("demo-0-r-0-0", namespace))
        # Its own write at once, without a LIST and without waiting for the watch.
        assert [
            p["metadata"]["name"] for p in await runtime.list_objects("Pod", namespace, {L.NAME: "demo"})
        ] == ["demo-0-r-0-0"]
        await runtime.annotate("Pod", namespace, "demo-0-r-0-0", {"example.com/a": "1"})
        (annotated,) = await runtime.list_objects("Pod", namespace, {L.NAME: "demo"})
        assert annotated["metadata"]["annotations"]["example.com/a"] == "1"
        # Another writer's object arrives through the watch.
        other = labelled_pod("demo-0-r-0-1", namespace)
        control_plane.client().create(Pod.from_dict(other))
        while len(await runtime.list_objects("Pod", namespace, {L.NAME: "demo"})) != 2:
            assert time.monotonic() < deadline + 20, "the watch did not bring the other pod"
            await asyncio.sleep(0.1)
        for kind in ("Pod", "Service", "PodGroup", "ControllerRevision"):
            await runtime.list_objects(kind, namespace, {L.NAME: "demo"})  # type: ignore[arg-type]
        assert lists == []  # every read above came from the informers
        await runtime.list_objects("Pod", namespace, {})  # not by our label: the cache cannot answer
        assert lists == ["Pod"]
    finally:
        client.list = real_list  # type: ignore[method-assign]
        await runtime.close()


async def until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_passes_and_resyncs_read_the_operators_own_objects_from_its_caches(
    control_plane: ControlPlane, client: AsyncClient
) -> None:
    install_crds(control_plane.client(), PHALANX_CRDS)
    namespace = control_plane.new_namespace("cache")
    options = OperatorOptions(
        namespace=namespace, lease_namespace=namespace, health_address="127.0.0.1", health_port=free_port()
    )
    operator = Operator(client, options)
    reads: list[tuple[str, str]] = []  # (verb, resource) of every GET and LIST of our own kinds
    ours = {ModelServingResource: "ModelServing", ModelDeploymentResource: "ModelDeployment"}
    real_get, real_list = client.get, client.list

    async def counting_get(resource: Any, *args: Any, **kwargs: Any) -> Any:
        if resource in ours:
            reads.append(("get", ours[resource]))
        return await real_get(resource, *args, **kwargs)

    def counting_list(resource: Any, *args: Any, **kwargs: Any) -> Any:
        if resource in ours:
            reads.append(("list", ours[resource]))
        return real_list(resource, *args, **kwargs)

    handled: list[Key] = []
    real_handle = operator._handle

    async def handle(key: Key) -> float | None:
        result = await real_handle(key)
        handled.append(key)
        return result

    operator._handle = handle  # type: ignore[method-assign]
    run = asyncio.create_task(operator.run())
    try:
        await until(
            "the caches list", lambda: operator._enqueue_everything() and operator.elector.leading.is_set()
        )
        client.get, client.list = counting_get, counting_list  # type: ignore[method-assign,assignment]

        serving = small_serving(namespace, "cached", "none", replicas=2)
        await client.create(ModelServingResource.from_dict(serving))
        deployment: dict[str, Any] = yaml.safe_load(
            (ROOT / "examples" / "llama-3.3-70b-nc80adis.yaml").read_text()
        )
        deployment["metadata"]["namespace"] = namespace
        await client.create(ModelDeploymentResource.from_dict(deployment))

        def status(cache: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
            found: dict[str, Any] = (cache.get((namespace, name)) or {}).get("status") or {}
            return found

        servings = operator.runtime._informers["ModelServing"].objects
        md_name = deployment["metadata"]["name"]
        await until("the ModelServing's status", lambda: bool(status(servings, "cached").get("groups")))
        await until("the plan", lambda: bool(status(operator.deployments.objects, md_name).get("plan")))
        # The resync queues everything again, from the caches.
        before = len(handled)
        operator.runtime.gangs_changed.set()
        await until("the resync's passes", lambda: len(handled) >= before + 3)
        kinds = {key[0] for key in handled}
        assert kinds == {"ModelServing", "ModelDeployment"}
        assert reads == []  # every pass and the resync read the caches
    finally:
        client.get, client.list = real_get, real_list  # type: ignore[method-assign]
        operator.stopping.set()
        await asyncio.wait_for(run, 60)
