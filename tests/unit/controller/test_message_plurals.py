"""Counts in the controller's words agree with their nouns: `phalanx status` and `kubectl describe`
show these messages as they are."""

from __future__ import annotations

from phalanx.controller.observed import PodState
from phalanx.controller.recovery import Failure
from tests.unit.controller.test_reconcile import make, running, with_replicas


def test_a_group_of_one_pod_is_created_with_one_pod() -> None:
    cluster = running(make(replicas=1, workers=0))
    messages = [e.message for d in cluster.decisions for e in d.events if e.reason == "GroupCreated"]
    assert messages and messages[0].endswith("(1 pod)"), messages
    cluster = running(make(replicas=1, workers=1))
    messages = [e.message for d in cluster.decisions for e in d.events if e.reason == "GroupCreated"]
    assert messages and messages[0].endswith("(2 pods)"), messages


def test_a_draining_group_counts_its_requests() -> None:
    cluster = running(make(replicas=2))
    cluster.set_spec(with_replicas(cluster.ms, 1))
    for in_flight, words in ((1, "1 request in flight"), (2, "2 requests in flight")):
        cluster.in_flight = {"demo-1-decode-0-0": in_flight}
        cluster.step()
        cluster.step()
        assert cluster.ms.status is not None
        assert cluster.ms.status.groups[1].message == f"draining: {words}"


def test_a_failed_pod_counts_its_restarts() -> None:
    def described(restarts: int) -> str:
        pod = PodState(
            "demo-0-decode-0-0", 0, "decode", 0, 0, "r", "r", phase="Running", restart_count=restarts
        )
        return Failure(pod, due=0.0).describe()

    assert described(0) == "pod demo-0-decode-0-0 not ready after restart"
    assert described(1) == "pod demo-0-decode-0-0 not ready after restart, 1 restart"
    assert described(3) == "pod demo-0-decode-0-0 not ready after restart, 3 restarts"
