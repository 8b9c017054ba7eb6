"""`phalanx status` shows what serves: groups serving, role instances ready, events with their object."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from phalanx.embedded.view import Capacity, RoleCount, capacity, describe_event, render_status


def serving(
    name: str = "qs", replicas: int = 2, roles: tuple[tuple[str, int, int], ...] = (("sim", 2, 1),)
) -> dict[str, Any]:
    """A ModelServing as the payload holds it; roles are (name, replicas, workerReplicas)."""
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "template": {
                "roles": [{"name": r, "replicas": n, "workerReplicas": w} for r, n, w in roles],
            },
        },
        "status": {"replicas": replicas, "groups": []},
    }


def pod(
    group: int,
    role_index: int,
    pod_index: int,
    *,
    ready: bool = True,
    role: str = "sim",
    name: str = "qs",
    namespace: str = "default",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": f"{name}-{group}-{role}-{role_index}-{pod_index}",
        "namespace": namespace,
        "serving": name,
        "role": role,
        "group": group,
        "roleIndex": role_index,
        "entry": pod_index == 0,
        "phase": "Running",
        "ready": ready,
        "draining": False,
        "terminating": False,
        **extra,
    }


def instance(group: int, role_index: int, *, ready: bool = True, **extra: Any) -> list[dict[str, Any]]:
    """An entry and one worker."""
    return [pod(group, role_index, 0, ready=ready, **extra), pod(group, role_index, 1, **extra)]


def text_of(payload: dict[str, Any]) -> str:
    console = Console(width=250, record=True)
    console.print(render_status(payload))
    return console.export_text()


def test_a_role_scale_up_is_capacity_growing_not_an_outage() -> None:
    # Role sim went from 1 to 2 instances per group; the new entries are still loading.
    pods = [*instance(0, 0), *instance(0, 1, ready=False), *instance(1, 0), *instance(1, 1, ready=False)]
    now = capacity(serving(), pods)
    assert now.serving_groups == {0, 1}
    assert now.roles == (RoleCount("sim", 2, 4),)
    assert now.group_roles[0] == (RoleCount("sim", 1, 2),)

    ms = serving()
    ms["status"]["groups"] = [
        {"name": f"qs-{g}", "index": g, "phase": "Starting", "message": f"pod qs-{g}-sim-1-0 not ready"}
        for g in (0, 1)
    ]
    ms["status"]["conditions"] = [{"type": "Available", "status": "False"}]
    text = text_of({"servings": [ms], "pods": pods})
    servings_row = next(line for line in text.splitlines() if line.startswith("│ qs "))
    assert "│ 2/2 " in servings_row and "sim 2/4" in servings_row
    assert text.count("yes (sim 1/2)") == 2  # each group says it serves while it scales


def test_a_group_without_a_routable_entry_is_not_serving() -> None:
    draining = capacity(serving(replicas=1), [*instance(0, 0, draining=True)])
    assert draining.serving_groups == frozenset()
    assert draining.roles == (RoleCount("sim", 0, 2),)  # a draining instance is on its way out
    terminating = capacity(serving(replicas=1), [*instance(0, 0, terminating=True)])
    assert terminating.serving_groups == frozenset()
    starting = capacity(serving(replicas=1), [*instance(0, 0, ready=False)])
    assert starting.serving_groups == frozenset()
    pending = capacity(serving(replicas=1), [pod(0, 0, 0, phase="Pending", ready=False)])
    assert pending.serving_groups == frozenset()


def test_an_instance_is_ready_only_with_every_pod_it_should_have() -> None:
    entry_alone = capacity(serving(replicas=1, roles=(("sim", 1, 1),)), [pod(0, 0, 0)])
    assert entry_alone.roles == (RoleCount("sim", 0, 1),)
    assert entry_alone.serving_groups == {0}  # the router would still send it requests
    worker_down = capacity(
        serving(replicas=1, roles=(("sim", 1, 1),)), [pod(0, 0, 0), pod(0, 0, 1, ready=False)]
    )
    assert worker_down.roles == (RoleCount("sim", 0, 1),)
    whole = capacity(serving(replicas=1, roles=(("sim", 1, 1),)), instance(0, 0))
    assert whole == Capacity(1, frozenset({0}), (RoleCount("sim", 1, 1),), {0: (RoleCount("sim", 1, 1),)})


def test_several_roles_and_other_servings_are_counted_apart() -> None:
    ms = serving(replicas=1, roles=(("prefill", 1, 0), ("decode", 2, 1)))
    pods = [
        pod(0, 0, 0, role="prefill"),
        *[pod(0, 0, i, role="decode") for i in (0, 1)],
        *[pod(0, 1, i, role="decode", ready=i == 1) for i in (0, 1)],
        pod(0, 0, 0, role="gone"),  # a role removed from the spec
        *[pod(0, 1, i, role="decode", namespace="other") for i in (0, 1)],  # same name, other namespace
        *[pod(0, 1, i, role="decode", name="another") for i in (0, 1)],
    ]
    now = capacity(ms, pods)
    assert now.roles == (RoleCount("prefill", 1, 1), RoleCount("decode", 1, 2))


def test_no_pods_yet() -> None:
    now = capacity(serving(), [])
    assert now.serving_groups == frozenset() and now.roles == (RoleCount("sim", 0, 4),)
    ms = serving()
    ms["status"]["groups"] = [{"name": "qs-0", "index": 0, "phase": "Pending"}]
    text = text_of({"servings": [ms], "pods": []})
    assert "│ 0/2 " in text and "│ no " in text


def test_events_name_the_object_they_are_about() -> None:
    started = {
        "time": "2026-12-06T11:44:12.1Z",
        "type": "Normal",
        "reason": "Started",
        "message": "Started container engine",
        "involvedObject": {"kind": "Pod", "name": "qs-0-sim-1-0"},
    }
    created = {
        "reason": "GroupCreated",
        "message": "created group qs-0 at revision abc (1 pod)",
        "involvedObject": {"kind": "ModelServing", "name": "qs"},
    }
    assert describe_event(started) == "pod/qs-0-sim-1-0 Started: Started container engine"
    assert (
        describe_event(created) == "modelserving/qs GroupCreated: created group qs-0 at revision abc (1 pod)"
    )
    assert describe_event({"reason": "Odd", "message": "no object"}) == "Odd: no object"
    text = text_of({"servings": [serving()], "pods": [], "events": [started]})
    assert "11:44:12 pod/qs-0-sim-1-0 Started: Started container engine" in text
