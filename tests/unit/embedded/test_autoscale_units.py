"""What `phalanx up`'s autoscaler adds to the group units: GPUs per group and what the local GPU
inventory can still place."""

from __future__ import annotations

from typing import Any

from phalanx.autoscale.observe.assemble import UnitState
from phalanx.embedded.autoscale_units import gpu_room, gpus_per_unit, placeable
from phalanx.runtimes.group_units import GroupUnit

EPOCH = 1796601600.0


def serving_with(
    entry_gpus: int, worker_gpus: int, workers: int = 1, roles: int = 1, name: str = "sim"
) -> dict[str, Any]:
    def template(gpus: int) -> dict[str, Any]:
        resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
        return {"spec": {"containers": [{"name": "engine", "resources": resources}]}}

    role = {"name": name, "replicas": roles, "workerReplicas": workers, "entryTemplate": template(entry_gpus)}
    role["workerTemplate"] = template(worker_gpus)
    return {"spec": {"template": {"roles": [role]}}}


def test_gpus_per_unit_count_every_pod_of_every_role_instance() -> None:
    assert gpus_per_unit(serving_with(2, 2, workers=3, roles=2)) == 16
    assert gpus_per_unit(serving_with(0, 0)) == 0


def test_gpus_per_role_instance_count_its_entry_and_workers_once() -> None:
    assert gpus_per_unit(serving_with(2, 2, workers=3, roles=2), "sim") == 8
    assert gpus_per_unit(serving_with(2, 2), "other") == 0


def test_placeable_groups_are_the_free_gpus_after_the_groups_still_waiting_for_theirs() -> None:
    waiting = GroupUnit(UnitState("demo-1", ready=False, pending_since=EPOCH), placed=False)
    leaving = GroupUnit(UnitState("demo-2", ready=False, draining=True), placed=False)
    placed = GroupUnit(UnitState("demo-0", ready=True))
    assert placeable(4, 9, [placed, waiting, leaving]) == 1  # 2 groups fit, 1 waits for them
    assert placeable(4, 3, [waiting]) == 0
    assert placeable(0, 0, [waiting]) is None  # a group without GPUs: no limit the runtime knows


def test_the_roles_new_units_share_the_free_gpus_after_those_waiting_for_theirs() -> None:
    waiting = GroupUnit(UnitState("pd-0-decode-1", ready=False, pending_since=EPOCH), placed=False)
    placed = GroupUnit(UnitState("pd-0-prefill-0", ready=True))
    room = gpu_room(10, {"prefill": 2, "decode": 4}, {"prefill": [placed], "decode": [waiting]})
    assert room is not None
    assert room({"prefill": 1, "decode": 1})  # 4 waiting + 2 + 4 = 10
    assert not room({"prefill": 2, "decode": 1})
    assert room({"prefill": 3, "decode": 0})
    # Prefill's own figure alone counts none of decode's waiting GPUs: 5 units, where 3 fit.
    assert placeable(2, 10, [placed]) == 5
    assert gpu_room(10, {"prefill": 0, "decode": 0}, {"prefill": [], "decode": [waiting]}) is None
