"""Edge cases of the controller core found in review: each pins one failure that once happened."""

from __future__ import annotations

import copy
from typing import Any

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing
from phalanx.controller.actions import Annotate, Apply, Create, Delete
from phalanx.controller.observed import DRAIN_REASON_ANNOTATION
from phalanx.controller.recovery import Settings
from tests.unit.controller.cluster import FakeCluster
from tests.unit.controller.test_reconcile import (
    condition,
    deleted_pods,
    make,
    running,
    with_image,
    with_replicas,
)


def _data(ms: ModelServing) -> dict[str, Any]:
    data = ms.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    return data


def two_roles(decode: int = 2, prefill: int = 1, **options: Any) -> ModelServing:
    """prefill + decode roles, each instance an entry and one worker, under RoleRollingUpdate."""
    options.setdefault("rollout_type", "RoleRollingUpdate")
    data = _data(make(replicas=1, role_replicas=decode, **options))
    prefill_role = copy.deepcopy(data["spec"]["template"]["roles"][0])
    prefill_role["name"] = "prefill"
    prefill_role["replicas"] = prefill
    data["spec"]["template"]["roles"].insert(0, prefill_role)
    return ModelServing.model_validate(data)


def role_image(ms: ModelServing, role: str, image: str) -> ModelServing:
    data = _data(ms)
    for entry in data["spec"]["template"]["roles"]:
        if entry["name"] == role:
            for template in ("entryTemplate", "workerTemplate"):
                entry[template]["spec"]["containers"][0]["image"] = image
    return ModelServing.model_validate(data)


def images(cluster: FakeCluster) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in cluster.pods()}


def test_groups_serving_while_a_role_scales_up_are_not_drained_beyond_budget() -> None:
    cluster = running(make(replicas=3, role_replicas=1, rolling={"maxUnavailable": 1}))
    cluster.set_spec(with_replicas(with_image(cluster.ms, "engine:v2"), 3, role_replicas=2))
    drained = [e for e in cluster.step().events if e.reason in ("GroupDraining", "GroupDeleted")]
    assert drained == []  # every group still serves; none may go while none is fully ready


def test_a_removed_role_is_drained_and_deleted() -> None:
    cluster = running(two_roles(decode=1, prefill=1))
    data = _data(cluster.ms)
    data["spec"]["template"]["roles"] = [
        r for r in data["spec"]["template"]["roles"] if r["name"] != "prefill"
    ]
    cluster.set_spec(ModelServing.model_validate(data))
    cluster.settle()
    assert cluster.pod_names() == ["demo-0-decode-0-0", "demo-0-decode-0-1"]
    assert ("Service", "demo-0-prefill-0-0") not in cluster.objects


def test_zero_unavailable_with_surge_keeps_every_group_until_the_surge_is_ready() -> None:
    cluster = running(make(replicas=2, rolling={"maxUnavailable": 0, "maxSurge": 1}))
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    reasons = [e.reason for e in cluster.step().events]
    assert "GroupCreated" in reasons and "GroupDraining" not in reasons
    lowest = 2
    for _ in range(40):
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1)
        cluster.step()
        assert cluster.ms.status is not None
        lowest = min(lowest, cluster.ms.status.available_replicas)
    assert lowest == 2
    assert cluster.groups() == [0, 1]


def test_surge_is_released_when_the_last_replacement_cannot_be_placed() -> None:
    cluster = running(make(replicas=2, rolling={"maxUnavailable": 1, "maxSurge": 1}))
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    update = ""
    for _ in range(60):
        cluster.step()
        assert cluster.ms.status is not None
        update = cluster.ms.status.update_revision
        cluster.finish_terminations()
        for pod in cluster.pods(include_deleting=False):
            labels = pod["metadata"]["labels"]
            if labels[L.GROUP_INDEX] == "0" and labels[L.REVISION] == update:
                continue  # the scheduler has no room for the new group 0 while the surge runs
            cluster._set_ready(pod, True)
        cluster.tick(1)
    assert not any(p["metadata"]["labels"].get(L.SURGE) for p in cluster.pods())


def test_role_partition_protected_instance_is_recreated_at_its_old_template() -> None:
    ms = make(replicas=1, role_replicas=3, rollout_type="RoleRollingUpdate", role_rolling={"partition": 1})
    cluster = running(ms)
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    cluster.settle()
    cluster.crash("demo-0-decode-0-1")
    cluster.settle()
    assert images(cluster)["demo-0-decode-0-0"] == images(cluster)["demo-0-decode-0-1"] == "engine:v1"


def test_policy_none_keeps_one_engine_on_one_version() -> None:
    ms = make(replicas=1, role_replicas=2, policy="None", rollout_type="RoleRollingUpdate")
    data = _data(ms)
    data["spec"]["template"]["roles"][0]["partition"] = 1
    cluster = running(ModelServing.model_validate(data))
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    cluster.settle()
    cluster.crash("demo-0-decode-0-1")
    cluster.settle()
    assert images(cluster)["demo-0-decode-0-1"] == images(cluster)["demo-0-decode-0-0"] == "engine:v1"


def test_a_role_rollout_of_one_role_completes() -> None:
    cluster = running(two_roles(decode=2, prefill=1))
    cluster.set_spec(role_image(cluster.ms, "prefill", "engine:v2"))
    cluster.settle()
    status = cluster.ms.status
    assert status is not None
    assert status.updated_replicas == 1
    assert status.current_revision == status.update_revision
    assert condition(cluster, "UpdateInProgress").reason == "UpdateComplete"


def test_a_vanished_protected_group_comes_back_at_its_old_revision() -> None:
    cluster = running(make(replicas=2, rolling={"partition": 1}), Settings(drain_settle=1.0))
    old = cluster.group_revisions()[0]
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    cluster.settle()
    for name in ("demo-0-decode-0-0", "demo-0-decode-0-1"):
        cluster.remove_pod(name)
    del cluster.objects[("Service", "demo-0-decode-0-0")]
    del cluster.objects[("PodGroup", "demo-0")]
    cluster.settle()
    assert cluster.group_revisions()[0] == old
    assert f"demo-{old}" in [o["metadata"]["name"] for o in cluster.of_kind("ControllerRevision")]


def test_an_outdated_group_that_serves_nothing_keeps_its_ordinal() -> None:
    cluster = running(make(replicas=3, rolling={"maxUnavailable": 1}))
    for pod in cluster.pods():
        if pod["metadata"]["labels"][L.GROUP_INDEX] == "0":
            cluster._set_ready(pod, False)
    cluster.set_spec(with_image(cluster.ms, "engine:v2"))
    decision = cluster.step()
    marks = [a for a in decision.actions if isinstance(a, Annotate) and a.name.startswith("demo-0-")]
    assert marks and all(a.annotations[DRAIN_REASON_ANNOTATION] == "rollout" for a in marks)
    cluster.settle()
    assert cluster.groups() == [0, 1, 2]


def test_a_partly_created_role_instance_is_completed_not_recreated() -> None:
    cluster = FakeCluster(make(replicas=1))
    decision = cluster.step()
    # The runtime stopped after the entry pod: the worker was never created.
    partial = decision.__class__(
        actions=tuple(a for a in decision.actions if not (isinstance(a, Create) and a.name.endswith("-0-1"))),
        status=decision.status,
    )
    cluster.objects.clear()
    cluster.apply(partial)
    created = [a.name for a in cluster.step().actions if isinstance(a, Create)]
    assert created == ["demo-0-decode-0-1"]
    assert cluster.objects[("Service", "demo-0-decode-0-0")]["metadata"].get("annotations") is None


def test_a_readiness_blip_long_after_a_restart_is_not_a_crash() -> None:
    cluster = running(make(replicas=1, grace=30))
    cluster.crash("demo-0-decode-0-1")
    cluster.step()
    cluster.tick(5)
    cluster.make_ready()
    cluster.step()
    cluster.tick(3600)
    cluster._set_ready(cluster.objects[("Pod", "demo-0-decode-0-1")], False)
    cluster.step()
    cluster.tick(31)
    assert deleted_pods(cluster.step()) == []


def test_the_gang_object_follows_a_change_of_gpus() -> None:
    ms = make(replicas=1, role_replicas=1, rollout_type="RoleRollingUpdate")
    cluster = running(ms)
    data = _data(cluster.ms)
    for template in ("entryTemplate", "workerTemplate"):
        container = data["spec"]["template"]["roles"][0][template]["spec"]["containers"][0]
        container["resources"] = {"limits": {"nvidia.com/gpu": "4"}}
    cluster.set_spec(ModelServing.model_validate(data))
    decision = cluster.step()
    assert any(isinstance(a, Apply) and a.kind == "PodGroup" for a in decision.actions)
    cluster.settle()
    assert cluster.objects[("PodGroup", "demo-0")]["spec"]["minResources"] == {"nvidia.com/gpu": "8"}


def test_deletion_is_announced_once_while_pods_terminate() -> None:
    cluster = running(make(replicas=2))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    reasons = []
    for _ in range(6):
        reasons += [e.reason for e in cluster.step().events]
        cluster.tick(1)  # pods stay terminating: finish_terminations is never called
    assert reasons.count("GroupDeleted") == 1
    assert not any(isinstance(a, Delete) for a in cluster.step().actions)
