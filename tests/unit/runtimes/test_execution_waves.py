"""A decision's actions run in waves: creates at once, but never a pod before its gang object."""

from __future__ import annotations

from phalanx.controller.actions import Action, Annotate, Create, Delete
from phalanx.runtimes.reconciler import execution_waves


def create(kind: str, name: str) -> Create:
    api = {"Pod": "v1", "Service": "v1", "PodGroup": "scheduling.volcano.sh/v1beta1"}.get(kind, "apps/v1")
    return Create({"apiVersion": api, "kind": kind, "metadata": {"name": name}})


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
