"""ModelServing and AutoscalingPolicy status -> the figures the status metrics export."""

from __future__ import annotations

from typing import Any

from phalanx.observe.figures import (
    PHASES,
    Decision,
    new_decisions,
    policy_figures,
    serving_figures,
)


def serving(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team", "name": "llama"},
        "spec": {"replicas": 3},
        "status": status,
    }


def group(index: int, phase: str, revision: str) -> dict[str, Any]:
    return {"name": f"llama-{index}", "index": index, "phase": phase, "revision": revision}


def test_a_serving_mid_rollout() -> None:
    figures = serving_figures(
        serving(
            replicas=4,
            availableReplicas=2,
            updatedReplicas=1,
            conditions=[{"type": "UpdateInProgress", "status": "True"}],
            groups=[
                group(0, "Ready", "a"),
                group(1, "Ready", "a"),
                group(2, "Draining", "a"),
                group(3, "Pending", "b"),
            ],
        )
    )
    assert (figures.namespace, figures.name) == ("team", "llama")
    assert (figures.desired, figures.groups, figures.ready, figures.updated) == (3, 4, 2, 1)
    assert figures.rolling
    assert dict(figures.by_phase) == {**dict.fromkeys(PHASES, 0), "Ready": 2, "Draining": 1, "Pending": 1}
    assert [p for p, _ in figures.by_phase] == list(PHASES)  # every phase, zero included
    assert figures.by_revision == (("a", 3), ("b", 1))


def test_a_new_serving_without_status() -> None:
    figures = serving_figures({"metadata": {"name": "m"}, "spec": {}})
    assert figures.namespace == "default"
    assert (figures.desired, figures.groups, figures.ready, figures.updated) == (
        1,
        0,
        0,
        0,
    )  # replicas defaults to 1
    assert not figures.rolling and figures.by_revision == ()


def test_a_rollout_held_by_its_partition_is_not_in_progress() -> None:
    held = serving(conditions=[{"type": "UpdateInProgress", "status": "False", "reason": "PartitionReached"}])
    assert not serving_figures(held).rolling


def test_an_unknown_phase_is_not_a_label() -> None:
    figures = serving_figures(serving(groups=[group(0, "Exploded", "a")]))
    assert sum(count for _, count in figures.by_phase) == 0


def policy(status: dict[str, Any], spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team", "name": "scale-llama"},
        "spec": spec or {"homogeneousTarget": {"target": {"targetRef": {"name": "llama"}}}},
        "status": status,
    }


def test_a_homogeneous_policy() -> None:
    unit = {"currentReplicas": 2, "desiredReplicas": 4, "readyReplicas": 1, "mode": "Panic"}
    [figures] = policy_figures(policy({"homogeneousStatus": unit}))
    assert (figures.policy, figures.modelserving, figures.role) == ("scale-llama", "llama", "")
    assert (figures.desired, figures.current, figures.ready, figures.panic) == (4, 2, 1, True)


def test_a_disaggregated_policy_has_one_target_per_role() -> None:
    roles = [
        {"name": "prefill", "desiredReplicas": 2},
        {"name": "decode", "desiredReplicas": 3, "mode": "Stable"},
    ]
    spec = {"disaggregatedTarget": {"targetRef": {"name": "pd"}}}
    found = policy_figures(policy({"disaggregatedStatus": {"roles": roles}}, spec))
    assert [(f.modelserving, f.role, f.desired, f.panic) for f in found] == [
        ("pd", "prefill", 2, False),
        ("pd", "decode", 3, False),
    ]


def test_a_policy_not_yet_decided_has_no_targets() -> None:
    assert policy_figures(policy({})) == []


def entry(time: str, previous: int, desired: int, reason: str = "", mode: str = "Stable") -> dict[str, Any]:
    return {"time": time, "previous": previous, "desired": desired, "mode": mode, "reason": reason}


T1, T2, T3 = "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:02.000000Z", "2026-01-01T00:00:03.000000Z"


def test_decisions_are_counted_once() -> None:
    history = [
        entry(T1, 1, 3, "inflight 12 over 1 group at target 5 per group asks for 3."),
        entry(T2, 3, 3, mode="Panic"),
    ]
    fresh, mark = new_decisions(history, "")
    assert fresh == [Decision("up", "signal"), Decision("none", "other")]
    assert mark == T2
    assert new_decisions(history, mark) == ([], T2)
    fresh, mark = new_decisions([*history[1:], entry(T3, 3, 2, "x; capped at the maximum 2.")], mark)
    assert fresh == [Decision("down", "bounds")] and mark == T3


def test_entries_without_a_time_are_not_counted() -> None:
    assert new_decisions([entry("", 1, 2)], "") == ([], "")
