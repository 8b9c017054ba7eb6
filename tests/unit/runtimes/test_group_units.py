"""What an autoscaler reads of a ModelServing's groups from its pods, the same for the local
runtime's pods and the API server's."""

from __future__ import annotations

from typing import Any

from phalanx.api import labels as L
from phalanx.autoscale.observe.assemble import UnitState
from phalanx.controller.observed import DRAINING_ANNOTATION
from phalanx.router.pods import endpoint_from_pod
from phalanx.runtimes.group_units import group_units

CREATED = "2026-12-07T00:00:00Z"
EPOCH = 1796601600.0  # CREATED in seconds


def pod(
    group: int,
    index: int = 0,
    *,
    serving: str = "demo",
    role: str = "sim",
    role_index: int = 0,
    ready: bool = True,
    scheduled: bool = True,
    ip: str = "127.0.0.5",
    created: str = CREATED,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    labels = {
        L.NAME: serving,
        L.GROUP_INDEX: str(group),
        L.ROLE: role,
        L.ROLE_INDEX: str(role_index),
        L.POD_INDEX: str(index),
    }
    if index == 0:
        labels[L.ENTRY] = "true"
    metadata: dict[str, Any] = {
        "name": f"{serving}-{group}-{role}-{role_index}-{index}",
        "namespace": "default",
        "labels": labels,
        "creationTimestamp": created,
        "annotations": annotations or {},
    }
    if deleting:
        metadata["deletionTimestamp"] = CREATED
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled:
        conditions.append({"type": "PodScheduled", "status": "True"})
    return {
        "metadata": metadata,
        "spec": {"containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": 8000}]}]},
        "status": {
            "phase": "Running" if ready else "Pending",
            "podIP": ip if scheduled else "",
            "conditions": conditions,
        },
    }


def test_each_group_is_one_unit_named_after_its_index_with_its_entry_pods_address() -> None:
    units = group_units([pod(1), pod(1, 1), pod(0), pod(0, 1, ip="127.0.0.6")], "demo", endpoint_from_pod)
    assert [u.state for u in units] == [UnitState("demo-0", ready=True), UnitState("demo-1", ready=True)]
    assert units[0].endpoint == "default/demo-0-sim-0-0"
    assert units[0].url == "http://127.0.0.5:8000"


def test_a_group_with_a_worker_not_ready_is_starting_since_its_oldest_pod() -> None:
    late = pod(0, 1, ready=False, created="2026-12-07T00:00:10Z")
    (unit,) = group_units([pod(0), late], "demo", endpoint_from_pod)
    assert unit.state == UnitState("demo-0", ready=False, pending_since=EPOCH)


def test_a_group_being_drained_or_deleted_is_draining() -> None:
    drained = pod(0, annotations={DRAINING_ANNOTATION: CREATED})
    units = group_units([drained, pod(0, 1), pod(1, 1, deleting=True), pod(2)], "demo", endpoint_from_pod)
    assert [(u.state.name, u.state.draining) for u in units] == [
        ("demo-0", True),
        ("demo-1", True),
        ("demo-2", False),
    ]
    assert units[1].state.ready is False  # a pod being deleted serves nothing


def test_with_a_role_each_instance_of_it_is_one_unit_and_other_roles_are_left_out() -> None:
    pods = [
        pod(0, role="prefill"),
        pod(0, role="decode", role_index=1, ready=False),
        pod(0, role="decode"),
        pod(1, role="decode"),
    ]
    units = group_units(pods, "demo", endpoint_from_pod, "decode")
    assert [(u.state.name, u.state.ready) for u in units] == [
        ("demo-0-decode-0", True),
        ("demo-0-decode-1", False),
        ("demo-1-decode-0", True),
    ]
    assert units[0].endpoint == "default/demo-0-decode-0-0"


def test_pods_of_other_servings_and_unlabelled_pods_are_not_units() -> None:
    stray = pod(0)
    del stray["metadata"]["labels"][L.GROUP_INDEX]
    assert group_units([pod(0, serving="other"), stray], "demo", endpoint_from_pod) == []


def test_an_entry_pod_without_an_address_has_no_endpoint_and_is_not_placed() -> None:
    (unit,) = group_units([pod(0, ready=False, scheduled=False)], "demo", endpoint_from_pod)
    assert (unit.endpoint, unit.url, unit.placed) == (None, None, False)


def test_a_pod_on_a_cluster_network_is_read_the_same_way() -> None:
    (unit,) = group_units([pod(0, ip="10.244.1.7")], "demo", endpoint_from_pod)
    assert (unit.endpoint, unit.url) == ("default/demo-0-sim-0-0", "http://10.244.1.7:8000")
    assert unit.state.ready


def test_groups_the_spec_asks_for_whose_pods_are_not_created_yet_are_pending_and_unplaced() -> None:
    # spec.replicas 3 with group 1 draining: groups 0 and 2 stay; one more is asked for, which the
    # controller will create at the lowest free index (3: 1 is still taken by the leaving group).
    pods = [pod(0), pod(1, annotations={DRAINING_ANNOTATION: CREATED}), pod(2)]
    units = group_units(pods, "demo", endpoint_from_pod, declared=3, now=EPOCH + 5)
    assert [u.state.name for u in units] == ["demo-0", "demo-1", "demo-2", "demo-3"]
    assert units[3].state == UnitState("demo-3", ready=False, pending_since=EPOCH + 5)
    assert (units[3].endpoint, units[3].placed) == (None, False)


def test_a_serving_just_started_from_its_file_counts_the_groups_it_asks_for() -> None:
    units = group_units([], "demo", endpoint_from_pod, declared=2, now=EPOCH)
    assert [(u.state.name, u.state.ready) for u in units] == [("demo-0", False), ("demo-1", False)]


def test_no_unit_is_added_when_the_pods_cover_the_spec_or_the_spec_asks_for_fewer() -> None:
    pods = [pod(0), pod(1)]
    assert len(group_units(pods, "demo", endpoint_from_pod, declared=2)) == 2
    assert len(group_units(pods, "demo", endpoint_from_pod, declared=1)) == 2  # scale-down: the pods count


def test_a_roles_instances_carry_their_group_and_index_and_declared_adds_none() -> None:
    pods = [pod(0, role="decode"), pod(1, role="decode", role_index=2), pod(0, role="prefill")]
    units = group_units(pods, "demo", endpoint_from_pod, "decode", declared=4, now=EPOCH)
    assert [(u.state.name, u.group, u.index) for u in units] == [
        ("demo-0-decode-0", 0, 0),
        ("demo-1-decode-2", 1, 2),
    ]


def started(
    group: int, index: int = 0, *, ready_at: str | None, restarts: int = 0, args: list[str] | None = None
) -> dict[str, Any]:
    """A ready pod whose Ready condition last changed at `ready_at`, with its engine's argv."""
    made = pod(group, index)
    if ready_at is not None:
        made["status"]["conditions"][0]["lastTransitionTime"] = ready_at
    made["status"]["containerStatuses"] = [{"name": "engine", "restartCount": restarts}]
    made["spec"]["containers"][0]["command"] = ["phalanx", "sim"]
    made["spec"]["containers"][0]["args"] = args or []
    return made


def test_a_ready_unit_s_startup_is_its_entry_pod_s_creation_to_ready() -> None:
    worker = started(0, 1, ready_at="2026-12-07T00:09:00Z")  # only the entry pod counts
    (unit,) = group_units([started(0, ready_at="2026-12-07T00:02:30.5Z"), worker], "demo", endpoint_from_pod)
    assert unit.state.startup_seconds == 150.5


def test_a_startup_is_unknown_after_a_restart_without_a_transition_time_or_before_ready() -> None:
    restarted = started(0, ready_at="2026-12-07T00:02:30Z", restarts=1)
    unstamped = started(1, ready_at=None)
    starting = pod(2, ready=False)
    starting["status"]["conditions"][0]["lastTransitionTime"] = "2026-12-07T00:01:00Z"
    units = group_units([restarted, unstamped, starting], "demo", endpoint_from_pod)
    assert [u.state.startup_seconds for u in units] == [None, None, None]


def test_a_unit_s_batch_size_comes_from_its_entry_pod_s_engine_arguments() -> None:
    units = group_units(
        [
            started(0, ready_at=CREATED, args=["--max-num-seqs", "64"]),
            started(1, ready_at=CREATED),  # the simulator's default
            pod(2),  # no engine command: unknown
        ],
        "demo",
        endpoint_from_pod,
    )
    assert [u.state.max_running for u in units] == [64, 256, None]
