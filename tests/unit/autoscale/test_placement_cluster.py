"""How many more units a Kubernetes cluster can place: the nodes' free extended resources, the
unit's pods by first fit, the units already waiting; None where no limit is known."""

from __future__ import annotations

from typing import Any

from phalanx.autoscale.placement_cluster import (
    all_fit,
    cluster_placeable,
    cluster_room,
    free_on_nodes,
    is_extended,
    unit_pods,
    units_that_fit,
)

GPU = "nvidia.com/gpu"


def node(name: str, gpus: str | None, *, ready: bool = True, unschedulable: bool = False) -> dict[str, Any]:
    allocatable = {"cpu": "64", "memory": "512Gi"} | ({GPU: gpus} if gpus is not None else {})
    return {
        "metadata": {"name": name},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(on: str | None, gpus: int, *, phase: str = "Running", init: int = 0) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "engine", "resources": {"limits": {GPU: str(gpus), "cpu": "8"}}}],
    }
    if init:
        spec["initContainers"] = [{"name": "warm", "resources": {"requests": {GPU: str(init)}}}]
    if on is not None:
        spec["nodeName"] = on
    return {"metadata": {"name": "p"}, "spec": spec, "status": {"phase": phase}}


def serving(*roles: tuple[str, int, int, int, int]) -> dict[str, Any]:
    """Roles as (name, replicas, entry GPUs, workerReplicas, worker GPUs)."""

    def template(gpus: int) -> dict[str, Any]:
        limits = {GPU: gpus} if gpus else {}
        return {"spec": {"containers": [{"name": "engine", "resources": {"limits": limits}}]}}

    return {
        "spec": {
            "replicas": 1,
            "template": {
                "roles": [
                    {
                        "name": name,
                        "replicas": replicas,
                        "entryTemplate": template(entry),
                        "workerReplicas": workers,
                        **({"workerTemplate": template(worker)} if workers else {}),
                    }
                    for name, replicas, entry, workers, worker in roles
                ]
            },
        }
    }


def test_extended_resources_are_those_with_a_domain_other_than_kubernetes() -> None:
    assert is_extended("nvidia.com/gpu")
    assert is_extended("amd.com/gpu")
    assert not is_extended("cpu")
    assert not is_extended("hugepages-2Mi")
    assert not is_extended("kubernetes.io/batch")
    assert not is_extended("requests.kubernetes.io/x")


def test_a_group_is_every_pod_of_every_role_and_a_role_unit_is_one_instance() -> None:
    ms = serving(("prefill", 2, 4, 1, 4), ("decode", 1, 8, 0, 0))
    assert unit_pods(ms) == [{GPU: 8}, {GPU: 4}, {GPU: 4}, {GPU: 4}, {GPU: 4}]
    assert unit_pods(ms, "prefill") == [{GPU: 4}, {GPU: 4}]
    assert unit_pods(ms, "decode") == [{GPU: 8}]
    assert unit_pods(serving(("sim", 1, 0, 2, 0))) == []  # no extended resource: no limit


def test_a_node_offers_its_allocatable_less_the_bound_pods_that_have_not_finished() -> None:
    nodes = [
        node("b", "8"),
        node("a", "8"),
        node("down", "8", ready=False),
        node("cordoned", "8", unschedulable=True),
    ]
    pods = [
        pod("a", 2),
        pod("a", 1, init=3),  # an init container's larger request counts
        pod("b", 4, phase="Succeeded"),
        pod("b", 4, phase="Failed"),
        pod(None, 8),  # pending: holds nothing yet
        pod("elsewhere", 8),
    ]
    assert free_on_nodes(nodes, pods) == {"a": {GPU: 3}, "b": {GPU: 8}}
    assert free_on_nodes([node("cpu-only", None)], []) == {"cpu-only": {}}


def test_pods_of_a_unit_fit_by_first_fit_and_never_split_across_nodes() -> None:
    eight = {"a": {GPU: 8}, "b": {GPU: 8}}
    assert units_that_fit(eight, [{GPU: 4}, {GPU: 4}]) == 2
    assert units_that_fit(eight, [{GPU: 8}, {GPU: 8}]) == 1
    # 6 + 6 free over two nodes: one 8-GPU pod fits nowhere although 12 are free in all.
    assert units_that_fit({"a": {GPU: 6}, "b": {GPU: 6}}, [{GPU: 8}]) == 0
    # Every resource a pod asks for must fit on the same node.
    both = {"a": {GPU: 8, "rdma/hca": 1}}
    assert units_that_fit(both, [{GPU: 4, "rdma/hca": 1}]) == 1
    assert units_that_fit(both, [{"amd.com/gpu": 1}]) == 0
    assert units_that_fit({"a": {GPU: 1000}}, [{GPU: 1}], most=5) == 5


def test_units_waiting_for_a_node_take_their_room_first_and_unknown_is_none() -> None:
    free = {"a": {GPU: 8}, "b": {GPU: 8}}
    assert cluster_placeable([{GPU: 4}], free, unplaced=0) == 4
    assert cluster_placeable([{GPU: 4}], free, unplaced=3) == 1
    assert cluster_placeable([{GPU: 4}], free, unplaced=9) == 0
    assert cluster_placeable([], free, unplaced=0) is None  # the unit needs no extended resource
    assert cluster_placeable([{GPU: 4}], None, unplaced=0) is None  # the nodes could not be read


def test_the_roles_pods_go_on_the_nodes_together_with_those_already_waiting() -> None:
    free = {"a": {GPU: 8}, "b": {GPU: 8}}
    prefill, decode = [{GPU: 2}], [{GPU: 4}, {GPU: 4}]  # a decode unit: entry and worker
    room = cluster_room(free, {"prefill": prefill, "decode": decode}, {"prefill": 0, "decode": 1})
    assert room is not None
    assert room({"prefill": 4, "decode": 0})  # 8 waiting for decode + 8 prefill
    assert room({"prefill": 0, "decode": 1})
    assert not room({"prefill": 1, "decode": 1})  # each alone fits; both do not
    assert not room({"prefill": 5, "decode": 0})
    # Each role's own figure sees the whole free map: 8 prefill, 2 - 1 decode.
    assert (cluster_placeable(prefill, free, 0), cluster_placeable(decode, free, 1)) == (8, 1)


def test_the_shared_room_places_largest_first_never_splits_a_pod_and_may_be_unknown() -> None:
    # 6 + 6 free: an 8-GPU pod fits nowhere; two 6-GPU pods fit, whatever order they were asked in.
    six = {"a": {GPU: 6}, "b": {GPU: 6}}
    room = cluster_room(six, {"small": [{GPU: 2}], "large": [{GPU: 6}]}, {})
    assert room is not None
    assert room({"small": 3, "large": 1})  # 6 on a, 2 + 2 + 2 on b
    assert not room({"small": 1, "large": 2})
    assert all_fit(six, [{GPU: 2}, {GPU: 6}, {GPU: 4}])  # 6 on a, then 4 and 2 on b
    assert not all_fit(six, [{GPU: 8}])
    assert cluster_room(None, {"decode": [{GPU: 4}]}, {}) is None  # the nodes could not be read
    assert cluster_room(six, {"prefill": [], "decode": []}, {}) is None  # no unit needs a GPU
