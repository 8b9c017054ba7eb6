"""The controller core, driven step by step with a fake clock over plain objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing
from phalanx.controller.actions import Annotate, Create, Delete
from phalanx.controller.observed import DRAINING_ANNOTATION, FAILURES_ANNOTATION
from phalanx.controller.recovery import Settings, backoff_delay
from tests.conftest import minimal_serving
from tests.unit.controller.cluster import FakeCluster


def make(
    replicas: int = 2,
    *,
    role_replicas: int = 1,
    workers: int = 1,
    policy: str = "RoleRecreate",
    rolling: dict[str, Any] | None = None,
    rollout_type: str = "ServingGroupRollingUpdate",
    grace: int = 0,
    image: str = "engine:v1",
    role_rolling: dict[str, Any] | None = None,
) -> ModelServing:
    data = minimal_serving()
    data["metadata"]["generation"] = 1
    spec = data["spec"]
    spec["replicas"] = replicas
    spec["recoveryPolicy"] = policy
    spec["rolloutStrategy"] = {"type": rollout_type}
    if rolling is not None:
        spec["rolloutStrategy"]["rollingUpdateConfiguration"] = rolling
    spec["template"]["restartGracePeriodSeconds"] = grace
    role = spec["template"]["roles"][0]
    role["replicas"] = role_replicas
    role["workerReplicas"] = workers
    role.update(role_rolling or {})
    for template in ("entryTemplate", "workerTemplate"):
        container = role[template]["spec"]["containers"][0]
        container["image"] = image
        container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    return ModelServing.model_validate(data)


def with_image(ms: ModelServing, image: str) -> ModelServing:
    data = ms.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    for template in ("entryTemplate", "workerTemplate"):
        data["spec"]["template"]["roles"][0][template]["spec"]["containers"][0]["image"] = image
    return ModelServing.model_validate(data)


def with_replicas(ms: ModelServing, replicas: int, role_replicas: int | None = None) -> ModelServing:
    data = ms.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    data["spec"]["replicas"] = replicas
    if role_replicas is not None:
        data["spec"]["template"]["roles"][0]["replicas"] = role_replicas
    return ModelServing.model_validate(data)


def running(ms: ModelServing, settings: Settings | None = None) -> FakeCluster:
    cluster = FakeCluster(ms, settings or Settings(drain_settle=1.0))
    cluster.settle()
    return cluster


def condition(cluster: FakeCluster, kind: str) -> Any:
    assert cluster.ms.status is not None
    return next(c for c in cluster.ms.status.conditions if c.type == kind)


# ---- creation and steady state ----------------------------------------------------------


def test_first_reconcile_creates_every_group_with_gang_first() -> None:
    cluster = FakeCluster(make(replicas=2))
    decision = cluster.step()
    kinds = [a.kind for a in decision.actions if isinstance(a, Create)]
    assert kinds[:2] == ["ControllerRevision", "Service"]
    # The gang, the role's subdomain Service, the role instance's headless Service, its pods.
    assert kinds[2:7] == ["PodGroup", "Service", "Service", "Pod", "Pod"]
    assert cluster.pod_names() == [
        "demo-0-decode-0-0",
        "demo-0-decode-0-1",
        "demo-1-decode-0-0",
        "demo-1-decode-0-1",
    ]
    assert [e.reason for e in decision.events] == ["GroupCreated", "GroupCreated"]


def test_steady_state_is_quiet_and_available() -> None:
    cluster = running(make(replicas=2))
    decision = cluster.step()
    assert decision.actions == ()
    assert decision.requeue_after is None
    status = cluster.ms.status
    assert status is not None
    assert (status.replicas, status.available_replicas, status.updated_replicas) == (2, 2, 2)
    assert status.current_revision == status.update_revision
    assert condition(cluster, "Available").status == "True"
    assert condition(cluster, "Progressing").status == "False"
    assert condition(cluster, "UpdateInProgress").reason == "UpdateComplete"
    assert [g.phase for g in status.groups] == ["Ready", "Ready"]


def test_reconcile_is_idempotent_before_the_runtime_catches_up() -> None:
    cluster = FakeCluster(make(replicas=2))
    first = cluster.step()
    # A runtime that has not applied anything yet sees the same world: same decision.
    from phalanx.controller.reconcile import reconcile

    empty = FakeCluster(make(replicas=2))
    again = reconcile(empty.ms, empty.observed(), empty.now, empty.settings)
    assert [type(a) for a in again.actions] == [type(a) for a in first.actions]
    # Applying the same creates twice changes nothing.
    cluster.apply(first)
    assert len(cluster.pods()) == 4


def test_condition_transition_time_moves_only_on_a_flip() -> None:
    cluster = FakeCluster(make(replicas=1))
    cluster.step()
    started = condition(cluster, "Available").last_transition_time
    cluster.tick(5)
    cluster.step()
    assert condition(cluster, "Available").last_transition_time == started
    cluster.make_ready()
    cluster.tick(5)
    cluster.step()
    flipped = condition(cluster, "Available")
    assert flipped.status == "True"
    assert flipped.last_transition_time != started


def test_pending_group_reports_the_gang_message() -> None:
    cluster = FakeCluster(make(replicas=1))
    cluster.step()
    gang = cluster.objects[("PodGroup", "demo-0")]
    gang["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "Unschedulable", "status": "True", "message": "needs 2 GPUs, 0 of 0 free"}],
    }
    cluster.step()
    status = cluster.ms.status
    assert status is not None
    assert status.groups[0].phase == "Pending"
    assert "needs 2 GPUs" in status.groups[0].message
    assert "demo-0 Pending" in condition(cluster, "Available").message


# ---- group-level scaling ----------------------------------------------------------------


def test_scale_up_takes_the_lowest_free_ordinals() -> None:
    cluster = running(make(replicas=3))
    for name in ("demo-1-decode-0-0", "demo-1-decode-0-1"):
        cluster.remove_pod(name)
    for kind, name in (("Service", "demo-1-decode-0-0"), ("PodGroup", "demo-1")):
        del cluster.objects[(kind, name)]
    cluster.set_spec(with_replicas(cluster.ms, 4))
    cluster.settle()
    assert cluster.groups() == [0, 1, 2, 3]


def _scale_down_victims(ready: dict[int, bool], costs: dict[int, int], to: int) -> list[int]:
    cluster = running(make(replicas=len(ready)))
    for index, is_ready in ready.items():
        for pod in cluster.pods():
            if pod["metadata"]["labels"][L.GROUP_INDEX] == str(index):
                pod["metadata"].setdefault("annotations", {})[L.POD_DELETION_COST_ANNOTATION] = str(
                    costs.get(index, 0)
                )
                if not is_ready:
                    cluster._set_ready(pod, False)
    cluster.set_spec(with_replicas(cluster.ms, to))
    decision = cluster.step()
    touched = set()
    for action in decision.actions:
        if isinstance(action, Delete | Annotate) and action.kind == "Pod":
            touched.add(int(action.name.split("-")[1]))
    return sorted(touched)


@pytest.mark.parametrize(
    ("ready", "costs", "to", "victims"),
    [
        ({0: True, 1: True, 2: True}, {}, 2, [2]),  # highest ordinal
        ({0: True, 1: True, 2: True}, {}, 1, [1, 2]),
        ({0: False, 1: True, 2: True}, {}, 2, [0]),  # not ready before ready
        ({0: True, 1: True, 2: True}, {2: 10, 0: 1, 1: 5}, 2, [0]),  # lower deletion cost first
        ({0: True, 1: False, 2: True}, {1: 100}, 2, [1]),  # readiness beats cost
        ({0: True, 1: True, 2: True}, {}, 0, [0, 1, 2]),
    ],
)
def test_scale_down_order(ready: dict[int, bool], costs: dict[int, int], to: int, victims: list[int]) -> None:
    assert _scale_down_victims(ready, costs, to) == victims


def test_scale_down_drains_a_ready_group_before_deleting_it() -> None:
    cluster = running(make(replicas=2))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    cluster.in_flight = {"demo-1-decode-0-0": 2}
    decision = cluster.step()
    assert all(isinstance(a, Annotate) for a in decision.actions)
    assert decision.draining == frozenset()  # drain marks land with this decision's actions
    assert cluster.step().draining == {"demo-1-decode-0-0"}
    assert cluster.ms.status is not None and cluster.ms.status.groups[1].phase == "Draining"
    cluster.tick(5)
    assert not any(isinstance(a, Delete) for a in cluster.step().actions)  # still 2 in flight
    cluster.in_flight = {"demo-1-decode-0-0": 0}
    deleted = [a.name for a in cluster.step().actions if isinstance(a, Delete)]
    # Its pods, its Services (the role's subdomain one, the role instance's), its PodGroup.
    assert deleted == [
        "demo-1-decode-0-0",
        "demo-1-decode-0-1",
        "demo-1-decode",
        "demo-1-decode-0-0",
        "demo-1",
    ]


def test_drain_is_bounded_by_the_entry_termination_grace_period() -> None:
    cluster = running(make(replicas=2))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    cluster.in_flight = {"demo-1-decode-0-0": 3}
    cluster.step()
    cluster.tick(29)
    assert not any(isinstance(a, Delete) for a in cluster.step().actions)
    cluster.tick(1.5)
    assert any(isinstance(a, Delete) for a in cluster.step().actions)


def test_drain_waits_for_routers_to_notice_even_when_idle() -> None:
    cluster = running(make(replicas=2), Settings(drain_settle=2.0))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    decision = cluster.step()
    assert decision.requeue_after == pytest.approx(2.0)
    assert not any(isinstance(a, Delete) for a in cluster.step().actions)
    cluster.tick(2)
    assert any(isinstance(a, Delete) for a in cluster.step().actions)


# ---- role-level scaling -----------------------------------------------------------------


def test_role_scale_up_and_down_inside_every_group() -> None:
    cluster = running(make(replicas=2, role_replicas=1))
    revision = cluster.group_revisions()
    cluster.set_spec(with_replicas(cluster.ms, 2, role_replicas=3))
    cluster.settle()
    assert "demo-1-decode-2-1" in cluster.pod_names()
    assert len(cluster.pod_names()) == 2 * 3 * 2
    assert cluster.group_revisions() == revision  # scaling never rolls
    assert cluster.objects[("PodGroup", "demo-1")]["spec"]["minMember"] == 6  # the gang follows
    cluster.set_spec(with_replicas(cluster.ms, 2, role_replicas=1))
    cluster.settle()
    assert cluster.pod_names() == [
        "demo-0-decode-0-0",
        "demo-0-decode-0-1",
        "demo-1-decode-0-0",
        "demo-1-decode-0-1",
    ]


# ---- rolling update ---------------------------------------------------------------------


def rollout_trace(cluster: FakeCluster, new: ModelServing, limit: int = 80) -> list[tuple[str, int]]:
    """Runs a rollout to the end; returns the (event, group) sequence of drains and creations."""
    cluster.set_spec(new)
    trace: list[tuple[str, int]] = []
    for _ in range(limit):
        decision = cluster.step()
        for event in decision.events:
            if event.reason in ("GroupDraining", "GroupCreated", "GroupDeleted"):
                group = int(event.message.split(" ")[2 if "surge" not in event.message else 3].split("-")[1])
                trace.append((event.reason, group))
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1.0)
        status = cluster.ms.status
        if (
            status
            and not decision.actions
            and condition(cluster, "UpdateInProgress").status == "False"
            and condition(cluster, "Progressing").status == "False"
        ):
            break
    return trace


def drains(trace: list[tuple[str, int]]) -> list[int]:
    return [group for event, group in trace if event == "GroupDraining"]


_VERB = {"GroupDraining": "drain", "GroupCreated": "create", "GroupDeleted": "delete"}


def rollout_steps(cluster: FakeCluster, new: ModelServing, limit: int = 40) -> list[str]:
    """Each reconcile's group-level moves during a rollout, one second apart, pods ready at once."""
    cluster.set_spec(new)
    steps = []
    for _ in range(limit):
        decision = cluster.step()
        moves = [
            f"{_VERB[e.reason]} {e.message.split('demo-')[1].split(' ')[0]}"
            for e in decision.events
            if e.reason in _VERB
        ]
        if moves:
            steps.append(", ".join(moves))
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1.0)
    return steps


ROLLOUT_SEQUENCES = [
    (
        3,
        {"maxUnavailable": 1},
        [
            "drain 2",
            "delete 2",
            "create 2",
            "drain 1",
            "delete 1",
            "create 1",
            "drain 0",
            "delete 0",
            "create 0",
        ],
    ),
    (
        3,
        {"maxUnavailable": 2},
        ["drain 2, drain 1", "delete 1, delete 2", "create 1, create 2", "drain 0", "delete 0", "create 0"],
    ),
    (
        3,
        {"maxUnavailable": 1, "maxSurge": 1},
        [
            "create 3, drain 2",
            "delete 2, drain 1",
            "delete 1, create 2",
            "create 1, drain 0",
            "delete 0",
            "create 0",
            "drain 3",
            "delete 3",
        ],
    ),
    (
        3,
        {"maxUnavailable": 1, "maxSurge": 2},
        [
            "create 3, create 4, drain 2",
            "delete 2, drain 1, drain 0",
            "delete 0, delete 1, create 2",
            "create 0, create 1",
            "drain 4, drain 3",
            "delete 3, delete 4",
        ],
    ),
    (
        4,
        {"maxUnavailable": "50%", "partition": 1},
        ["drain 3, drain 2", "delete 2, delete 3", "create 2, create 3", "drain 1", "delete 1", "create 1"],
    ),
    (
        2,
        {"maxUnavailable": 1, "maxSurge": "100%"},
        [
            "create 2, create 3, drain 1",
            "delete 1, drain 0",
            "delete 0, create 1",
            "create 0",
            "drain 3, drain 2",
            "delete 2, delete 3",
        ],
    ),
    (
        4,
        {"maxUnavailable": 1, "maxSurge": 1, "partition": 2},
        ["create 4, drain 3", "delete 3, drain 2", "delete 2, create 3", "create 2", "drain 4", "delete 4"],
    ),
]


@pytest.mark.parametrize(("replicas", "rolling", "expected"), ROLLOUT_SEQUENCES)
def test_rollout_sequence(replicas: int, rolling: dict[str, Any], expected: list[str]) -> None:
    """Surge groups come first at new ordinals and go last; drained ordinals are refilled in place."""
    cluster = running(make(replicas=replicas, rolling=rolling))
    assert rollout_steps(cluster, with_image(cluster.ms, "engine:v2")) == expected
    assert cluster.groups() == list(range(replicas))


def test_rollout_one_group_at_a_time_highest_ordinal_first() -> None:
    cluster = running(make(replicas=3, rolling={"maxUnavailable": 1}))
    new = with_image(cluster.ms, "engine:v2")
    trace = rollout_trace(cluster, new)
    assert drains(trace) == [2, 1, 0]
    assert set(cluster.group_revisions().values()) == {cluster.ms.status.update_revision}  # type: ignore[union-attr]
    assert cluster.groups() == [0, 1, 2]  # replacements keep their ordinals


def test_rollout_never_has_more_than_max_unavailable_groups_down() -> None:
    cluster = running(make(replicas=4, rolling={"maxUnavailable": 2}))
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    lowest = 4
    for _ in range(60):
        cluster.step()
        status = cluster.ms.status
        assert status is not None
        lowest = min(lowest, status.available_replicas)
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1.0)
    assert lowest >= 2
    assert status.updated_replicas == 4


def test_first_step_of_a_rollout_drains_max_unavailable_groups() -> None:
    cluster = running(make(replicas=4, rolling={"maxUnavailable": 2}))
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    events = [e for e in cluster.step().events if e.reason == "GroupDraining"]
    assert [e.message.split(" ")[2] for e in events] == ["demo-3", "demo-2"]


@pytest.mark.parametrize(("partition", "kept"), [(1, [0]), (2, [0, 1]), ("50%", [0, 1]), (3, [0, 1, 2])])
def test_rollout_stops_at_the_partition(partition: int | str, kept: list[int]) -> None:
    cluster = running(make(replicas=4, rolling={"maxUnavailable": 1, "partition": partition}))
    old = cluster.group_revisions()[0]
    rollout_trace(cluster, with_image(cluster.ms, "engine:v2"))
    revisions = cluster.group_revisions()
    assert [g for g, r in revisions.items() if r == old] == kept
    update = condition(cluster, "UpdateInProgress")
    assert (update.status, update.reason) == ("False", "PartitionReached")
    status = cluster.ms.status
    assert status is not None
    assert status.current_revision == old
    assert status.updated_replicas == 4 - len(kept)


def test_partition_protected_group_is_recreated_at_its_old_revision() -> None:
    cluster = running(make(replicas=2, rolling={"partition": 1}))
    old = cluster.group_revisions()[0]
    rollout_trace(cluster, with_image(cluster.ms, "engine:v2"))
    cluster.crash("demo-0-decode-0-1")
    cluster.settle()
    assert cluster.group_revisions()[0] == old
    images = {
        p["spec"]["containers"][0]["image"]
        for p in cluster.pods()
        if p["metadata"]["labels"][L.GROUP_INDEX] == "0"
    }
    assert images == {"engine:v1"}


def test_lowering_the_partition_continues_the_rollout() -> None:
    cluster = running(make(replicas=3, rolling={"partition": 2}))
    rollout_trace(cluster, with_image(cluster.ms, "engine:v2"))
    data = cluster.ms.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status")
    data["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["partition"] = 0
    trace = rollout_trace(cluster, ModelServing.model_validate(data))
    assert drains(trace) == [1, 0]
    assert len(set(cluster.group_revisions().values())) == 1


def test_rollout_start_and_end_are_announced_once() -> None:
    cluster = running(make(replicas=2, rolling={"maxUnavailable": 1}))
    rollout_trace(cluster, with_image(cluster.ms, "engine:v2"))
    reasons = [e.reason for d in cluster.decisions for e in d.events]
    assert reasons.count("RolloutStarted") == 1
    assert reasons.count("RolloutComplete") == 1
    assert reasons.index("RolloutStarted") < reasons.index("GroupDraining") < reasons.index("RolloutComplete")


def test_rollout_stopping_at_the_partition_is_announced() -> None:
    cluster = running(make(replicas=2, rolling={"partition": 1}))
    rollout_trace(cluster, with_image(cluster.ms, "engine:v2"))
    reasons = [e.reason for d in cluster.decisions for e in d.events]
    assert "RolloutPaused" in reasons and "RolloutComplete" not in reasons


def test_surge_keeps_full_capacity_and_is_reclaimed_at_the_end() -> None:
    cluster = running(make(replicas=2, rolling={"maxUnavailable": 1, "maxSurge": 1}))
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    first = cluster.step()
    created = [e.message for e in first.events if e.reason == "GroupCreated"]
    assert created and "surge group demo-2" in created[0]
    surge_pods = [p for p in cluster.pods() if p["metadata"]["labels"].get(L.SURGE) == "true"]
    assert len(surge_pods) == 2
    lowest = 2
    for _ in range(60):
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1.0)
        cluster.step()
        status = cluster.ms.status
        assert status is not None
        lowest = min(lowest, status.available_replicas)
    assert cluster.groups() == [0, 1]
    assert not any(p["metadata"]["labels"].get(L.SURGE) for p in cluster.pods())
    assert status.updated_replicas == 2
    assert lowest >= 1


def test_surge_with_zero_unavailable_never_drops_capacity() -> None:
    cluster = running(make(replicas=2, rolling={"maxUnavailable": 1, "maxSurge": 2}))
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    lowest = 2
    for _ in range(60):
        cluster.step()
        status = cluster.ms.status
        assert status is not None
        lowest = min(lowest, status.available_replicas)
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1.0)
    assert lowest >= 1
    assert cluster.groups() == [0, 1]


def test_not_ready_outdated_groups_are_replaced_without_budget() -> None:
    cluster = running(make(replicas=3, rolling={"maxUnavailable": 1}))
    for pod in cluster.pods():
        if pod["metadata"]["labels"][L.GROUP_INDEX] in ("0", "1"):
            cluster._set_ready(pod, False)
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    decision = cluster.step()
    deleted_groups = {int(a.name.split("-")[1]) for a in decision.actions if isinstance(a, Delete)}
    assert deleted_groups == {0, 1}
    touched = {int(a.name.split("-")[1]) for a in decision.actions if isinstance(a, Annotate)}
    assert touched == {0, 1}  # marked as removed for the rollout; the serving group 2 waits


def test_role_rolling_update_replaces_role_instances_within_their_budget() -> None:
    ms = make(
        replicas=1,
        role_replicas=3,
        rollout_type="RoleRollingUpdate",
        role_rolling={"maxUnavailable": 1},
    )
    cluster = running(ms)
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    decision = cluster.step()
    drained = {a.name for a in decision.actions if isinstance(a, Annotate)}
    assert drained == {"demo-0-decode-2-0", "demo-0-decode-2-1"}
    cluster.settle()
    images = {p["spec"]["containers"][0]["image"] for p in cluster.pods()}
    assert images == {"engine:v2"}
    assert cluster.groups() == [0]


def test_role_partition_keeps_low_role_instances() -> None:
    ms = make(
        replicas=1,
        role_replicas=3,
        rollout_type="RoleRollingUpdate",
        role_rolling={"maxUnavailable": 1, "partition": 1},
    )
    cluster = running(ms)
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    cluster.settle()
    by_instance = {
        p["metadata"]["labels"][L.ROLE_INDEX]: p["spec"]["containers"][0]["image"] for p in cluster.pods()
    }
    assert by_instance == {"0": "engine:v1", "1": "engine:v2", "2": "engine:v2"}


# ---- recovery ---------------------------------------------------------------------------


def deleted_pods(decision: Any) -> list[str]:
    return sorted(a.name for a in decision.actions if isinstance(a, Delete) and a.kind == "Pod")


def test_role_recreate_restarts_the_whole_role_instance() -> None:
    cluster = running(make(replicas=2, role_replicas=2, policy="RoleRecreate"))
    cluster.crash("demo-1-decode-1-1")
    decision = cluster.step()
    assert deleted_pods(decision) == ["demo-1-decode-1-0", "demo-1-decode-1-1"]
    assert [e.reason for e in decision.events] == ["RoleRecreate"]
    assert decision.events[0].type == "Warning"
    assert "demo-1-decode-1-1" in decision.events[0].message
    service = cluster.objects[("Service", "demo-1-decode-1-0")]
    assert service["metadata"]["annotations"][FAILURES_ANNOTATION] == "1"
    # The new pods start together only once the old ones are gone.
    assert not any(isinstance(a, Create) for a in cluster.step().actions)
    cluster.finish_terminations()
    created = sorted(a.name for a in cluster.step().actions if isinstance(a, Create))
    assert created == ["demo-1-decode-1-0", "demo-1-decode-1-1"]


def test_serving_group_recreate_restarts_every_pod_of_the_group() -> None:
    cluster = running(make(replicas=2, role_replicas=2, policy="ServingGroupRecreate"))
    cluster.crash("demo-0-decode-1-0")
    decision = cluster.step()
    assert deleted_pods(decision) == [
        "demo-0-decode-0-0",
        "demo-0-decode-0-1",
        "demo-0-decode-1-0",
        "demo-0-decode-1-1",
    ]
    assert [e.reason for e in decision.events] == ["GroupRecreate"]
    cluster.settle()
    assert len(cluster.pod_names()) == 8


def test_policy_none_replaces_only_the_failed_pod() -> None:
    cluster = running(make(replicas=1, policy="None"))
    cluster.crash("demo-0-decode-0-1")
    decision = cluster.step()
    assert deleted_pods(decision) == ["demo-0-decode-0-1"]
    cluster.finish_terminations()
    created = [a.name for a in cluster.step().actions if isinstance(a, Create)]
    assert created == ["demo-0-decode-0-1"]  # recreated (Kthena's None deletes and never recreates)


def test_policy_none_recreates_a_pod_that_vanished() -> None:
    cluster = running(make(replicas=1, policy="None"))
    cluster.remove_pod("demo-0-decode-0-1")
    decision = cluster.step()
    assert [a.name for a in decision.actions if isinstance(a, Create)] == ["demo-0-decode-0-1"]
    assert deleted_pods(decision) == []  # its sibling keeps running
    assert [e.reason for e in decision.events] == ["PodCreated"]


def test_policy_none_counts_a_failure_once_though_the_deleted_pod_then_goes_missing() -> None:
    cluster = running(make(replicas=1, policy="None"))
    cluster.crash("demo-0-decode-0-1")
    assert [e.reason for e in cluster.step().events] == ["PodRecreate"]
    cluster.finish_terminations()
    assert [e.reason for e in cluster.step().events] == ["PodCreated"]
    cluster.settle()
    assert cluster.ms.status is not None and cluster.ms.status.groups[0].failures == 1


def test_vanished_pod_triggers_role_recreate() -> None:
    cluster = running(make(replicas=1, policy="RoleRecreate"))
    cluster.remove_pod("demo-0-decode-0-1")
    assert deleted_pods(cluster.step()) == ["demo-0-decode-0-0"]


def test_grace_period_lets_a_pod_recover_in_place() -> None:
    cluster = running(make(replicas=1, grace=30))
    cluster.crash("demo-0-decode-0-1")
    decision = cluster.step()
    assert deleted_pods(decision) == []
    assert decision.requeue_after == pytest.approx(30)
    assert cluster.ms.status is not None and cluster.ms.status.groups[0].phase == "Recovering"
    cluster.tick(10)
    cluster.make_ready("demo-0-decode-0-1")  # came back by itself
    cluster.tick(30)
    assert deleted_pods(cluster.step()) == []


def test_grace_period_expiry_triggers_the_policy() -> None:
    cluster = running(make(replicas=1, grace=30))
    cluster.crash("demo-0-decode-0-1")
    cluster.step()
    cluster.tick(29)
    assert deleted_pods(cluster.step()) == []
    cluster.tick(1)
    assert deleted_pods(cluster.step()) == ["demo-0-decode-0-0", "demo-0-decode-0-1"]


def test_backoff_delay_doubles_up_to_the_cap() -> None:
    settings = Settings(backoff_base=10, backoff_cap=60)
    assert [backoff_delay(n, settings) for n in range(1, 7)] == [0, 10, 20, 40, 60, 60]


def test_repeated_failures_back_off_and_show_in_status() -> None:
    settings = Settings(backoff_base=10, backoff_cap=300, drain_settle=1.0)
    cluster = running(make(replicas=1), settings)
    waits = []
    for _ in range(3):
        cluster.crash("demo-0-decode-0-0")
        cluster.step()
        cluster.finish_terminations()
        started = cluster.now
        while not any(isinstance(a, Create) for a in cluster.step().actions):
            cluster.tick(1)
            assert cluster.now - started < 100
        waits.append(cluster.now - started)
        cluster.make_ready()
        cluster.tick(1)
        cluster.step()
    assert waits == [0, 10, 20]
    status = cluster.ms.status
    assert status is not None
    assert status.groups[0].failures == 3


def test_backing_off_group_says_so() -> None:
    settings = Settings(backoff_base=10, drain_settle=1.0)
    cluster = running(make(replicas=1), settings)
    cluster.crash("demo-0-decode-0-0")
    cluster.step()
    cluster.finish_terminations()
    cluster.step()  # first recovery: recreated at once
    cluster.make_ready()
    cluster.crash("demo-0-decode-0-0")
    cluster.step()
    cluster.finish_terminations()
    decision = cluster.step()
    assert not any(isinstance(a, Create) for a in decision.actions)
    assert decision.requeue_after == pytest.approx(10)
    group = cluster.ms.status.groups[0]  # type: ignore[union-attr]
    assert group.phase == "BackingOff"
    assert "failed 2 times in a row" in group.message
    assert "demo-0 BackingOff" in condition(cluster, "Available").message


def test_failure_count_resets_after_a_stable_period() -> None:
    settings = Settings(failure_reset_after=60, drain_settle=1.0)
    cluster = running(make(replicas=1), settings)
    cluster.crash("demo-0-decode-0-1")
    cluster.step()
    cluster.finish_terminations()
    cluster.step()
    cluster.make_ready()
    cluster.tick(61)
    decision = cluster.step()
    resets = [a for a in decision.actions if isinstance(a, Annotate) and a.kind == "Service"]
    assert resets and resets[0].annotations[FAILURES_ANNOTATION] is None


def test_draining_groups_are_never_recovered() -> None:
    cluster = running(make(replicas=2))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    cluster.in_flight = {"demo-1-decode-0-0": 1}
    cluster.step()
    cluster.crash("demo-1-decode-0-1")
    decision = cluster.step()
    assert deleted_pods(decision) == []
    assert not any(a.kind == "Service" for a in decision.actions if isinstance(a, Annotate))


# ---- restart safety ---------------------------------------------------------------------


def test_a_fresh_controller_continues_a_drain_from_the_annotations() -> None:
    cluster = running(make(replicas=2))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    cluster.step()
    pod = cluster.objects[("Pod", "demo-1-decode-0-0")]
    assert DRAINING_ANNOTATION in pod["metadata"]["annotations"]
    # A new controller process: no status, nothing remembered.
    cluster.ms = cluster.ms.model_copy(update={"status": None})
    cluster.tick(5)
    deleted = deleted_pods(cluster.step())
    assert deleted == ["demo-1-decode-0-0", "demo-1-decode-0-1"]


def test_a_fresh_controller_finishes_a_rollout_from_revisions_alone() -> None:
    cluster = running(make(replicas=3, rolling={"partition": 1}))
    old = cluster.group_revisions()[0]
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    for _ in range(3):
        cluster.step()
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1)
    cluster.ms = cluster.ms.model_copy(update={"status": None})
    cluster.settle()
    assert cluster.group_revisions()[0] == old
    assert len(set(cluster.group_revisions().values())) == 2


def test_unused_revisions_are_collected() -> None:
    cluster = running(make(replicas=1))
    rollout_trace(cluster, with_image(cluster.ms, "engine:v2"))
    rollout_trace(cluster, with_image(cluster.ms, "engine:v3"))
    cluster.settle()
    assert len(cluster.of_kind("ControllerRevision")) == 1


def test_revision_snapshot_round_trips() -> None:
    from phalanx.controller.revision import group_revision, revision_object, serving_from_revision

    ms = make()
    read = serving_from_revision(copy.deepcopy(revision_object(ms)))
    assert read is not None
    revision, spec = read
    assert revision == group_revision(ms) == group_revision(spec)
