"""When a drain may end: known counts, unknown counts, the settle period and the bound."""

from __future__ import annotations

import copy

import pytest

from phalanx.controller.actions import Delete
from phalanx.controller.drain import drain_progress
from phalanx.controller.observed import DRAINING_ANNOTATION, PodState, pod_state, requests_at
from phalanx.controller.recovery import Settings
from phalanx.router.pods import endpoint_from_pod
from tests.unit.controller.cluster import FakeCluster
from tests.unit.controller.test_reconcile import make, running, with_replicas

SETTINGS = Settings(drain_settle=2.0, drain_poll=0.5)
SINCE = 100.0
BOUND = 30.0


def progress(counts: list[int | None], after: float) -> tuple[bool, float]:
    drain = drain_progress(counts, SINCE, SINCE + after, BOUND, SETTINGS)
    return drain.done, drain.wake_at - SINCE


@pytest.mark.parametrize(
    ("counts", "after", "done", "wake_after"),
    [
        # Before the settle period nothing ends, whatever the counts: routers may not know yet.
        ([0], 0.0, False, 2.0),
        ([0], 1.9, False, 2.0),
        ([None], 1.0, False, 2.0),
        ([3], 1.0, False, 2.0),
        # Settled and every entry known idle: delete at once.
        ([0], 2.0, True, 2.0),
        ([0, 0], 5.0, True, 5.0),
        ([], 2.0, True, 2.0),  # no entry pod left to wait on
        # Settled with requests in flight: look again after a poll, never past the bound.
        ([2], 2.0, False, 2.5),
        ([0, 1], 10.0, False, 10.5),
        ([1], 29.8, False, 30.0),
        # Unknown is never idle, alone or beside known zeros.
        ([None], 2.0, False, 2.5),
        ([None], 29.0, False, 29.5),
        ([0, None], 10.0, False, 10.5),
        ([None, None], 10.0, False, 10.5),
        # The bound ends every drain.
        ([None], 30.0, True, 30.0),
        ([5], 30.0, True, 30.0),
        ([0, None, 4], 31.0, True, 31.0),
    ],
)
def test_drain_progress(counts: list[int | None], after: float, done: bool, wake_after: float) -> None:
    assert progress(counts, after) == (done, pytest.approx(wake_after))


def test_a_bound_shorter_than_the_settle_period_still_ends_the_drain() -> None:
    drain = drain_progress([None], SINCE, SINCE + 0.5, 1.0, SETTINGS)
    assert (drain.done, drain.wake_at) == (False, SINCE + 1.0)
    assert drain_progress([None], SINCE, SINCE + 1.0, 1.0, SETTINGS).done


def test_the_message_says_what_is_known_and_what_is_not() -> None:
    assert drain_progress([1], SINCE, SINCE + 3, BOUND, SETTINGS).message == "draining: 1 request in flight"
    assert drain_progress([0, None], SINCE, SINCE + 3, BOUND, SETTINGS).message == (
        "draining: 0 requests in flight, unknown at 1 entry pod: waiting up to the 30 s drain bound"
    )
    assert drain_progress([2, None, None], SINCE, SINCE + 3, BOUND, SETTINGS).message == (
        "draining: 2 requests in flight, unknown at 2 entry pods: waiting up to the 30 s drain bound"
    )


def pod(**fields: object) -> PodState:
    base: dict[str, object] = {
        "name": "m-0-decode-0-0",
        "group_index": 0,
        "role": "decode",
        "role_index": 0,
        "pod_index": 0,
        "revision": "r",
        "role_revision": "rr",
        "phase": "Running",
        "ip": "10.0.0.7",
    }
    return PodState(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "counts", "expected"),
    [
        (pod(), {"m-0-decode-0-0": 4}, 4),
        (pod(), {"m-0-decode-0-0": 0}, 0),
        (pod(), {"m-0-decode-0-0": -1}, 0),  # a source's glitch is not a negative load
        (pod(), {}, None),  # reachable, not counted: unknown
        (pod(), {"other": 0}, None),
        (pod(ready=False), {}, None),  # not ready now, yet it may still finish requests
        (pod(deleting=True), {}, None),
        (pod(ip=""), {}, 0),  # never had an address: nothing could reach it
        (pod(phase="Pending", ip=""), {}, 0),
        (pod(phase="Failed"), {}, 0),  # no container runs
        (pod(phase="Succeeded"), {}, 0),
        (pod(phase="Failed"), {"m-0-decode-0-0": 2}, 2),  # a reading wins
    ],
)
def test_requests_at(state: PodState, counts: dict[str, int], expected: int | None) -> None:
    assert requests_at(state, counts) == expected


def with_addresses(cluster: FakeCluster) -> FakeCluster:
    """Gives every pod an address, as a kubelet does once the pod runs."""
    for number, obj in enumerate(cluster.pods(), start=1):
        obj["status"]["podIP"] = f"10.0.0.{number}"
    return cluster


def deleted(cluster: FakeCluster) -> list[str]:
    return [a.name for a in cluster.step().actions if isinstance(a, Delete) and a.kind == "Pod"]


def test_a_scale_down_with_no_count_waits_for_the_bound() -> None:
    cluster = with_addresses(running(make(replicas=2), SETTINGS))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    cluster.step()  # marks group 1 draining
    cluster.tick(2)
    assert deleted(cluster) == []
    assert cluster.ms.status is not None
    assert "unknown at 1 entry pod" in cluster.ms.status.groups[1].message
    cluster.tick(27.9)
    assert deleted(cluster) == []
    cluster.tick(0.1)
    assert deleted(cluster) == ["demo-1-decode-0-0", "demo-1-decode-0-1"]


def test_a_known_idle_entry_ends_the_drain_right_after_the_settle_period() -> None:
    cluster = with_addresses(running(make(replicas=2), SETTINGS))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    cluster.step()
    cluster.in_flight = {"demo-1-decode-0-0": 0}
    cluster.tick(1)
    assert deleted(cluster) == []  # routers may not have noticed yet
    cluster.tick(1)
    assert deleted(cluster) == ["demo-1-decode-0-0", "demo-1-decode-0-1"]


def test_a_count_that_becomes_unknown_holds_the_drain_again() -> None:
    cluster = with_addresses(running(make(replicas=2), SETTINGS))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    cluster.step()
    cluster.in_flight = {"demo-1-decode-0-0": 1}
    cluster.tick(3)
    assert deleted(cluster) == []
    cluster.in_flight = {}  # its last reading is too old now
    cluster.tick(1)
    assert deleted(cluster) == []
    cluster.in_flight = {"demo-1-decode-0-0": 0}
    assert deleted(cluster) == ["demo-1-decode-0-0", "demo-1-decode-0-1"]


def test_a_role_instance_drain_waits_on_its_unknown_entry_too() -> None:
    cluster = with_addresses(running(make(replicas=1, role_replicas=2), SETTINGS))
    cluster.set_spec(with_replicas(cluster.ms, 1, role_replicas=1))
    cluster.step()
    cluster.tick(10)
    assert deleted(cluster) == []
    cluster.in_flight = {"demo-0-decode-1-0": 0}
    assert deleted(cluster) == ["demo-0-decode-1-0", "demo-0-decode-1-1"]


def test_under_up_every_entry_pod_that_could_be_unknown_has_a_router_count() -> None:
    """`phalanx up`'s router counts every endpoint it has; an entry pod the core would call unknown
    must be one of them, or local drains would wait their whole bound."""
    cluster = running(make(replicas=1), SETTINGS)
    entry = next(p for p in cluster.pods() if p["metadata"]["name"] == "demo-0-decode-0-0")
    variants: list[dict[str, object]] = [
        {},
        {"podIP": "10.0.0.9"},
        {"podIP": "10.0.0.9", "phase": "Pending"},
        {"podIP": "10.0.0.9", "phase": "Failed"},
        {"podIP": "10.0.0.9", "conditions": []},  # never ready
        {"podIP": "fd00::9"},
    ]
    for extra in variants:
        for deleting in (False, True):
            obj = copy.deepcopy(entry)
            obj["status"].update(extra)
            obj["metadata"].setdefault("annotations", {})[DRAINING_ANNOTATION] = "2026-01-01T00:00:00Z"
            if deleting:
                obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:05Z"
            state = pod_state(obj)
            assert state is not None and state.entry
            if requests_at(state, {}) is None:
                assert endpoint_from_pod(obj) is not None, (extra, deleting)
