"""The figures the status metrics export, computed from ModelServing and AutoscalingPolicy objects as
plain data (their JSON form, as the API server and `phalanx up` hold them).

Labels stay bounded: one series per ModelServing (namespace, name), per phase of the fixed phase list,
per revision present now (a rollout has two), and per autoscaled target (the ModelServing or a role);
never a pod name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from phalanx.observe.reasons import reason_kind

# The ServingGroup phases, in the order of the API's `GroupPhase`.
PHASES = ("Pending", "Starting", "Ready", "Recovering", "BackingOff", "Draining", "Deleting")

Object = Mapping[str, Any]


@dataclass(frozen=True)
class ServingFigures:
    namespace: str
    name: str
    desired: int  # spec.replicas
    groups: int  # groups that exist, surge and deleting ones included
    ready: int  # groups whose every pod is ready
    updated: int  # groups at the update revision
    rolling: bool  # a rolling update is in progress (condition UpdateInProgress)
    by_phase: tuple[tuple[str, int], ...]  # every phase, zero included
    by_revision: tuple[tuple[str, int], ...]  # revisions that have groups now


@dataclass(frozen=True)
class TargetFigures:
    """One scaled unit of a policy: its ModelServing (role '') or one role of it."""

    namespace: str
    policy: str
    modelserving: str
    role: str
    desired: int
    current: int
    ready: int
    panic: bool


@dataclass(frozen=True)
class Decision:
    """One recorded decision, as the counter of decisions counts it."""

    direction: str  # up, down, or none (a change of mode only)
    reason: str  # a kind from reasons.REASON_KINDS


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _meta(obj: Object) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def serving_figures(obj: Object) -> ServingFigures:
    namespace, name = _meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    groups = [g for g in status.get("groups") or [] if isinstance(g, Mapping)]
    phases = dict.fromkeys(PHASES, 0)
    revisions: dict[str, int] = {}
    for group in groups:
        phase = group.get("phase")
        if phase in phases:
            phases[phase] += 1
        revision = str(group.get("revision") or "")
        if revision:
            revisions[revision] = revisions.get(revision, 0) + 1
    rolling = any(
        c.get("type") == "UpdateInProgress" and c.get("status") == "True"
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    )
    return ServingFigures(
        namespace=namespace,
        name=name,
        desired=_int(spec.get("replicas", 1)),
        groups=_int(status.get("replicas")),
        ready=_int(status.get("availableReplicas")),
        updated=_int(status.get("updatedReplicas")),
        rolling=rolling,
        by_phase=tuple(phases.items()),
        by_revision=tuple(sorted(revisions.items())),
    )


def _target(spec: Object) -> str:
    """The name of the ModelServing the policy scales ('' when it names none)."""
    homogeneous = spec.get("homogeneousTarget")
    if isinstance(homogeneous, Mapping):
        return str(((homogeneous.get("target") or {}).get("targetRef") or {}).get("name") or "")
    disaggregated = spec.get("disaggregatedTarget")
    if isinstance(disaggregated, Mapping):
        return str((disaggregated.get("targetRef") or {}).get("name") or "")
    return ""


def target_statuses(policy: Object) -> list[Object]:
    """The policy's per-unit statuses: the ModelServing's, or one per role."""
    status = policy.get("status") or {}
    found: list[Object] = []
    if isinstance(status.get("homogeneousStatus"), Mapping):
        found.append(status["homogeneousStatus"])
    disaggregated = status.get("disaggregatedStatus")
    if isinstance(disaggregated, Mapping):
        found += [r for r in disaggregated.get("roles") or [] if isinstance(r, Mapping)]
    found += [r for r in status.get("heterogeneousStatus") or [] if isinstance(r, Mapping)]
    return found


def policy_figures(policy: Object) -> list[TargetFigures]:
    namespace, name = _meta(policy)
    serving = _target(policy.get("spec") or {})
    return [
        TargetFigures(
            namespace=namespace,
            policy=name,
            modelserving=serving,
            role=str(unit.get("name") or ""),
            desired=_int(unit.get("desiredReplicas")),
            current=_int(unit.get("currentReplicas")),
            ready=_int(unit.get("readyReplicas")),
            panic=unit.get("mode") == "Panic",
        )
        for unit in target_statuses(policy)
    ]


def new_decisions(history: Sequence[Object], seen_until: str) -> tuple[list[Decision], str]:
    """The decisions of `history` recorded after `seen_until` (a status time; '' counts them all),
    and the time to count from next. Times are the status' fixed-width UTC text, so they compare as
    text; the history keeps its newest entries, so entries at or before the mark were counted."""
    fresh: list[Decision] = []
    newest = seen_until
    for entry in history:
        when = str(entry.get("time") or "")
        if not when or when <= seen_until:
            continue
        previous, desired = _int(entry.get("previous")), _int(entry.get("desired"))
        direction = "up" if desired > previous else "down" if desired < previous else "none"
        fresh.append(Decision(direction, reason_kind(str(entry.get("reason") or ""))))
        newest = max(newest, when)
    return fresh, newest


def count_decisions(decisions: Iterable[Decision]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for d in decisions:
        counts[(d.direction, d.reason)] = counts.get((d.direction, d.reason), 0) + 1
    return counts
