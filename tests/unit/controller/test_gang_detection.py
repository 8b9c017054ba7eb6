"""Gang objects follow what the cluster serves: no PodGroup CRD, no PodGroup, and a condition that says so."""

from __future__ import annotations

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing
from phalanx.controller.actions import Create, Delete
from tests.unit.controller.cluster import FakeCluster
from tests.unit.controller.test_reconcile import condition, make, running


def with_scheduler(ms: ModelServing, scheduler: str | None = None, gang: str | None = None) -> ModelServing:
    data = ms.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    if scheduler is not None:
        data["spec"]["schedulerName"] = scheduler
    if gang is not None:
        data["metadata"].setdefault("annotations", {})[L.GANG_SCHEDULER_ANNOTATION] = gang
    return ModelServing.model_validate(data)


def test_a_served_gang_api_gives_every_group_a_podgroup_and_says_so() -> None:
    cluster = running(make(replicas=2))
    assert len(cluster.of_kind("PodGroup")) == 2
    gang = condition(cluster, "GangScheduled")
    assert (gang.status, gang.reason) == ("True", "PodGroupPerGroup")
    assert "Volcano PodGroup" in gang.message and "minMember 2" in gang.message


def test_without_the_volcano_crd_pods_are_created_plain_and_the_condition_says_why() -> None:
    cluster = FakeCluster(make(replicas=2))
    cluster.served_gangs = frozenset()
    cluster.settle()
    assert cluster.of_kind("PodGroup") == []
    assert len(cluster.pod_names()) == 4
    assert condition(cluster, "Available").status == "True"  # the groups still run
    gang = condition(cluster, "GangScheduled")
    assert (gang.status, gang.reason) == ("False", "PodGroupNotServed")
    assert "scheduling.volcano.sh/v1beta1" in gang.message and "install" in gang.message


def test_when_the_crd_appears_running_groups_get_their_podgroups_without_a_restart() -> None:
    cluster = FakeCluster(make(replicas=2))
    cluster.served_gangs = frozenset()
    cluster.settle()
    pods_before = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in cluster.pods()}
    cluster.served_gangs = frozenset({"volcano"})
    cluster.tick(30)
    decision = cluster.step()
    created = sorted(a.name for a in decision.actions if isinstance(a, Create))
    assert created == ["demo-0", "demo-1"]
    assert not any(isinstance(a, Delete) for a in decision.actions)
    assert {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in cluster.pods()} == pods_before
    cluster.step()
    assert condition(cluster, "GangScheduled").status == "True"


def test_a_scheduler_without_gang_scheduling_gets_no_podgroup_and_a_warning_condition() -> None:
    cluster = running(with_scheduler(make(replicas=1), "default-scheduler"))
    assert cluster.of_kind("PodGroup") == []
    gang = condition(cluster, "GangScheduled")
    assert (gang.status, gang.reason) == ("False", "NoGangScheduler")
    assert "'default-scheduler'" in gang.message and "schedulerName: volcano" in gang.message


def test_coscheduling_needs_its_own_api_served() -> None:
    ms = with_scheduler(make(replicas=1), gang="coscheduling")
    cluster = FakeCluster(ms)
    cluster.served_gangs = frozenset({"volcano"})
    cluster.settle()
    assert cluster.of_kind("PodGroup") == []
    gang = condition(cluster, "GangScheduled")
    assert gang.reason == "PodGroupNotServed" and "scheduling.x-k8s.io/v1alpha1" in gang.message
    cluster.served_gangs = frozenset({"volcano", "coscheduling"})
    cluster.settle()
    [podgroup] = cluster.of_kind("PodGroup")
    assert podgroup["apiVersion"] == L.COSCHEDULING_PODGROUP_API
    assert condition(cluster, "GangScheduled").status == "True"
