"""A decision's actions run in waves: creates at once, but never a pod before its gang object."""

from __future__ import annotations

from phalanx.api import labels as L
from phalanx.controller.actions import Action, Annotate, Create, Delete
from phalanx.runtimes.reconciler import execution_waves


def create(kind: str, name: str, group: int | None = None) -> Create:
    api = {"Pod": "v1", "Service": "v1", "PodGroup": "scheduling.volcano.sh/v1beta1"}.get(kind, "apps/v1")
    labels = {} if group is None else {L.GROUP_INDEX: str(group)}
    return Create({"apiVersion": api, "kind": kind, "metadata": {"name": name, "labels": labels}})


def names(waves: list[list[Action]]) -> list[list[str]]:
    return [[a.name for a in wave] for wave in waves]


def test_a_run_of_creates_is_objects_first_then_every_pod_at_once() -> None:
    actions: list[Action] = [
        create("ControllerRevision", "rev"),
        create("PodGroup", "g0"),
        create("Service", "g0-svc"),
        create("Pod", "g0-a"),
        create("Pod", "g0-b"),
        create("PodGroup", "g1"),
        create("Pod", "g1-a"),
    ]
    assert names(execution_waves(actions)) == [["rev", "g0", "g0-svc", "g1"], ["g0-a", "g0-b", "g1-a"]]


def test_other_actions_keep_their_place_alone() -> None:
    actions: list[Action] = [
        Annotate("Pod", "old", {"draining": "now"}),
        create("Pod", "p1"),
        Delete("Pod", "old"),
        create("PodGroup", "g"),
        create("Pod", "p2"),
    ]
    assert names(execution_waves(actions)) == [["old"], ["p1"], ["old"], ["g"], ["p2"]]


def test_nothing_to_do_is_no_wave() -> None:
    assert execution_waves([]) == []


def group(index: int) -> list[Action]:
    return [
        create("PodGroup", f"g{index}", index),
        create("Service", f"g{index}-svc", index),
        create("Pod", f"g{index}-a", index),
        create("Pod", f"g{index}-b", index),
    ]


def test_many_groups_go_in_blocks_each_objects_then_pods() -> None:
    actions = [
        create("ControllerRevision", "rev"),
        *group(0),
        *group(1),
        *group(2),
        create("Service", "client"),
    ]
    assert names(execution_waves(actions, groups_per_block=2)) == [
        ["rev", "g0", "g0-svc", "g1", "g1-svc"],  # the revision rides with the first block
        ["g0-a", "g0-b", "g1-a", "g1-b"],
        ["g2", "g2-svc", "client"],
        ["g2-a", "g2-b"],
    ]


def test_no_pod_comes_before_its_groups_gang_object_whatever_the_block_size() -> None:
    actions = [action for index in range(7) for action in group(index)]
    for size in (1, 2, 3, 7, 32):
        created: set[str] = set()
        for wave in execution_waves(actions, groups_per_block=size):
            for action in wave:
                if action.kind == "Pod":
                    assert f"g{action.name[1:].split('-')[0]}" in created, (size, action.name)
            created |= {a.name for a in wave}
        assert len(created) == len(actions)
