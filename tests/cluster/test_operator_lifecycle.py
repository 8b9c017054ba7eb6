"""The operator keeps groups healthy and rolls them out on a real control plane: partition, maxSurge,
each recovery policy against failed and deleted pods, a crash in the middle of a rollout, and a
leader handing over to the other replica."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lightkube.resources.coordination_v1 import Lease

from phalanx.api import labels as L
from phalanx.kube.resources import ModelServingResource, VolcanoPodGroup
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.servings import (
    conditions_of,
    images_by_group,
    merge_patch,
    pods_of,
    pool_nodes,
    small_serving,
    status_of,
    uids,
)

pytestmark = pytest.mark.cluster


def start(cp: ControlPlane, prefix: str, nodes: int, gpus: int = 8) -> tuple[str, str]:
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace(prefix)
    return namespace, pool_nodes(cp, namespace, nodes, gpus=gpus)


def available(cp: ControlPlane, namespace: str, name: str, count: int) -> Callable[[], bool]:
    return lambda: status_of(cp, namespace, name).get("availableReplicas") == count


def new_image(manifest: dict[str, Any], image: str) -> dict[str, Any]:
    """The manifest's spec with every container on `image` (a merge patch replaces the roles list)."""
    for role in manifest["spec"]["template"]["roles"]:
        for template in ("entryTemplate", "workerTemplate"):
            for container in role[template]["spec"]["containers"]:
                container["image"] = image
    return {"spec": manifest["spec"]}


class StatusWatch:
    """Samples a ModelServing's status and pods in the background while a test acts."""

    def __init__(self, cp: ControlPlane, namespace: str, name: str) -> None:
        self.cp, self.namespace, self.name = cp, namespace, name
        self.min_available: int | None = None
        self.saw_surge = False
        self.max_pods = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                status = status_of(self.cp, self.namespace, self.name)
                pods = pods_of(self.cp, self.namespace)
            except Exception:  # a transient API error: sample again
                continue
            count = int(status.get("availableReplicas") or 0)
            self.min_available = count if self.min_available is None else min(self.min_available, count)
            self.max_pods = max(self.max_pods, len(pods))
            self.saw_surge |= any(
                (p.metadata.labels or {}).get(L.SURGE) == "true" for p in pods.values() if p.metadata
            )


def test_a_rollout_stops_at_the_partition_and_goes_on_when_it_is_lowered(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace, pool = start(cp, "partition", nodes=3)
    manifest = small_serving(
        namespace, "part", pool, replicas=3, rolling={"maxUnavailable": 1, "partition": 1}
    )
    cp.client().create(ModelServingResource.from_dict(manifest))
    with operator_process(cp, namespace, tmp_path):
        wait_for("3 groups available", available(cp, namespace, "part", 3), timeout=120)
        merge_patch(cp, namespace, "part", new_image(manifest, "engine:v2"))

        def held_at_partition() -> bool:
            status = status_of(cp, namespace, "part")
            update = conditions_of(cp, namespace, "part")["UpdateInProgress"]
            return (
                images_by_group(cp, namespace) == {0: {"engine:v1"}, 1: {"engine:v2"}, 2: {"engine:v2"}}
                and status.get("updatedReplicas") == 2
                and status.get("availableReplicas") == 3
                and update["reason"] == "PartitionReached"
            )

        wait_for("groups 1 and 2 updated, group 0 held by the partition", held_at_partition, timeout=150)
        merge_patch(
            cp,
            namespace,
            "part",
            {"spec": {"rolloutStrategy": {"rollingUpdateConfiguration": {"partition": 0}}}},
        )

        def all_updated() -> bool:
            status = status_of(cp, namespace, "part")
            return (
                images_by_group(cp, namespace) == {g: {"engine:v2"} for g in range(3)}
                and status.get("updatedReplicas") == 3
                and status.get("availableReplicas") == 3
                and status.get("currentRevision") == status.get("updateRevision")
            )

        wait_for("every group updated once the partition is 0", all_updated, timeout=120)
    assert len(pods_of(cp, namespace)) == 6


def test_a_max_surge_rollout_keeps_every_group_available(control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = control_plane
    namespace, pool = start(cp, "surge", nodes=3)  # room for the 2 groups plus 1 surge group
    manifest = small_serving(
        namespace, "surge", pool, replicas=2, rolling={"maxUnavailable": 0, "maxSurge": 1}
    )
    cp.client().create(ModelServingResource.from_dict(manifest))
    with operator_process(cp, namespace, tmp_path):
        wait_for("2 groups available", available(cp, namespace, "surge", 2), timeout=120)
        with StatusWatch(cp, namespace, "surge") as watch:
            merge_patch(cp, namespace, "surge", new_image(manifest, "engine:v2"))

            def done() -> bool:
                status = status_of(cp, namespace, "surge")
                return (
                    images_by_group(cp, namespace) == {0: {"engine:v2"}, 1: {"engine:v2"}}
                    and status.get("updatedReplicas") == 2
                    and status.get("availableReplicas") == 2
                    and not any(g.get("surge") for g in status.get("groups") or [])
                )

            wait_for("both groups updated and the surge group released", done, timeout=180)
    assert watch.saw_surge, "no surge group was created"
    assert watch.min_available == 2, f"availability dropped to {watch.min_available} during the rollout"
    assert watch.max_pods == 6  # never more than one surge group
    assert sorted(pods_of(cp, namespace)) == [
        "surge-0-engine-0-0",
        "surge-0-engine-0-1",
        "surge-1-engine-0-0",
        "surge-1-engine-0-1",
    ]


# Two role instances per group tell the policies apart: the fault hits instance 0's worker.
INSTANCE_0 = {"rec-0-engine-0-0", "rec-0-engine-0-1"}
WHOLE_GROUP = INSTANCE_0 | {"rec-0-engine-1-0", "rec-0-engine-1-1"}
RECOVERY_CASES = [
    ("ServingGroupRecreate", "fail", WHOLE_GROUP),
    ("ServingGroupRecreate", "delete", WHOLE_GROUP),
    ("RoleRecreate", "delete", INSTANCE_0),
    ("None", "fail", {"rec-0-engine-0-1"}),
    ("None", "delete", {"rec-0-engine-0-1"}),
]


@pytest.mark.parametrize(("policy", "fault", "replaced"), RECOVERY_CASES)
def test_each_recovery_policy_replaces_exactly_its_scope(
    control_plane: ControlPlane, tmp_path: Path, policy: str, fault: str, replaced: set[str]
) -> None:
    cp = control_plane
    namespace, pool = start(cp, "rec", nodes=2)
    manifest = small_serving(namespace, "rec", pool, replicas=1, role_replicas=2, recovery=policy)
    cp.client().create(ModelServingResource.from_dict(manifest))
    with operator_process(cp, namespace, tmp_path):
        wait_for("the group available", available(cp, namespace, "rec", 1), timeout=120)
        before = uids(cp, namespace)
        assert len(before) == 4
        if fault == "fail":
            cp.fail_pod("rec-0-engine-0-1", namespace)
        else:
            cp.remove_pod("rec-0-engine-0-1", namespace)

        def recovered() -> bool:
            now = uids(cp, namespace)
            return (
                set(now) == set(before)
                and {name for name in before if now[name] != before[name]} == replaced
                and status_of(cp, namespace, "rec").get("availableReplicas") == 1
            )

        wait_for(f"{policy} to replace {sorted(replaced)}", recovered, timeout=120)
        time.sleep(2)  # nothing more is replaced afterwards
        assert recovered()
    [group] = status_of(cp, namespace, "rec")["groups"]
    # Under None a missing pod is only created again, uncounted (docs/architecture.md, Recovery).
    assert group["failures"] == (0 if (policy, fault) == ("None", "delete") else 1)


def test_an_operator_killed_mid_rollout_is_replaced_and_the_rollout_converges(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace, pool = start(cp, "restart", nodes=3)
    manifest = small_serving(namespace, "roll", pool, replicas=3, rolling={"maxUnavailable": 1})
    cp.client().create(ModelServingResource.from_dict(manifest))
    with operator_process(cp, namespace, tmp_path, name="first") as first:
        wait_for("3 groups available", available(cp, namespace, "roll", 3), timeout=120)
        merge_patch(cp, namespace, "roll", new_image(manifest, "engine:v2"))

        def mid_rollout() -> bool:
            images = images_by_group(cp, namespace)
            return any("engine:v2" in i for i in images.values()) and any(
                "engine:v1" in i for i in images.values()
            )

        wait_for("the rollout under way", mid_rollout, timeout=120, interval=0.1)
        os.killpg(first.pid, signal.SIGKILL)  # no clean shutdown: the Lease is left held
        first.wait(10)
    with operator_process(cp, namespace, tmp_path, name="second"):

        def converged() -> bool:
            status = status_of(cp, namespace, "roll")
            return (
                images_by_group(cp, namespace) == {g: {"engine:v2"} for g in range(3)}
                and status.get("updatedReplicas") == 3
                and status.get("availableReplicas") == 3
            )

        # The new process waits out the dead leader's Lease (15 s) before it reconciles.
        wait_for("the rollout finished by the new operator", converged, timeout=180)
        pods = pods_of(cp, namespace)
    assert sorted(pods) == [
        f"roll-{g}-engine-0-{p}" for g in range(3) for p in range(2)
    ]  # none twice, none lost


def lease_holder(cp: ControlPlane, namespace: str) -> str:
    lease = cp.client().get(Lease, "phalanx-operator", namespace=namespace)
    return (lease.spec.holderIdentity if lease.spec else None) or ""


def test_the_follower_takes_over_when_the_leader_stops(control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = control_plane
    namespace, pool = start(cp, "failover", nodes=2)
    cp.client().create(ModelServingResource.from_dict(small_serving(namespace, "ha", pool, replicas=1)))
    with (
        operator_process(cp, namespace, tmp_path, name="replica-a") as a,
        operator_process(cp, namespace, tmp_path, name="replica-b") as b,
    ):
        wait_for("the group available", available(cp, namespace, "ha", 1), timeout=120)
        holder = wait_for("a leader", lambda: lease_holder(cp, namespace), timeout=30)
        by_pid = {a.pid: a, b.pid: b}
        leader = by_pid[int(holder.rsplit("-", 1)[1])]
        follower = b if leader is a else a
        os.killpg(leader.pid, signal.SIGTERM)  # a rolling restart of the operator Deployment
        stopped = time.monotonic()
        leader.wait(20)
        assert leader.returncode == 0
        took_over = wait_for(
            "the follower holds the Lease",
            lambda: lease_holder(cp, namespace).endswith(f"-{follower.pid}"),
            timeout=30,
            interval=0.1,
        )
        assert took_over
        handover = time.monotonic() - stopped
        merge_patch(cp, namespace, "ha", {"spec": {"replicas": 2}})
        wait_for("the new leader scales to 2 groups", available(cp, namespace, "ha", 2), timeout=120)
        assert follower.poll() is None
    # A clean stop releases the Lease, so the follower need not wait out its 15 s duration.
    assert handover < 10, f"handover took {handover:.1f}s"


def test_role_level_scaling_adds_role_instances_inside_the_group_and_grows_its_gang(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace, pool = start(cp, "rolescale", nodes=2)
    manifest = small_serving(namespace, "rs", pool, replicas=1, role_replicas=1)
    cp.client().create(ModelServingResource.from_dict(manifest))
    with operator_process(cp, namespace, tmp_path):
        wait_for("the group available", available(cp, namespace, "rs", 1), timeout=120)
        before = uids(cp, namespace)
        manifest["spec"]["template"]["roles"][0]["replicas"] = 2
        merge_patch(cp, namespace, "rs", {"spec": manifest["spec"]})

        def grown() -> bool:
            gang = cp.client().get(VolcanoPodGroup, "rs-0", namespace=namespace).to_dict()
            [group] = status_of(cp, namespace, "rs").get("groups") or [{}]
            return (
                sorted(pods_of(cp, namespace))
                == ["rs-0-engine-0-0", "rs-0-engine-0-1", "rs-0-engine-1-0", "rs-0-engine-1-1"]
                and gang["spec"]["minMember"] == 4
                and group.get("phase") == "Ready"
                and group.get("readyPods") == 4
            )

        wait_for("a second role instance in the same group", grown, timeout=120)
        after = uids(cp, namespace)
    # Role scaling is not a rollout: the first instance kept running.
    assert {name: after[name] for name in before} == before
