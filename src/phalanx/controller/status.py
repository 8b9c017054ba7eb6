"""The ModelServing status and its conditions, computed from the groups as they are now.

Conditions are always all four, each True or False, with a message that names the groups and why;
`lastTransitionTime` moves only when a condition's status flips (Kthena's stays stale because it
rewrites only on a flip, and then only the status).

- `Available`: every one of `spec.replicas` groups is ready.
- `Progressing`: some group is being created, started, recovered, drained or deleted.
- `UpdateInProgress`: some group outside the partition is not yet at `updateRevision`.
- `GangScheduled`: each group is one gang object, so the scheduler places it whole or not at all;
  False when the scheduler has none or the cluster does not serve its PodGroup API.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from phalanx.api import labels as L
from phalanx.api.base import Condition
from phalanx.api.modelserving import GroupPhase, ModelServing, ModelServingStatus, ServingGroupStatus
from phalanx.api.names import group_name
from phalanx.controller.desired import gang_min_member, status_label_selector
from phalanx.controller.groups import GroupView
from phalanx.controller.observed import format_time


@dataclass(frozen=True)
class GroupNote:
    """What the reconcile found most notable about a group (phase plus words for the user)."""

    phase: str
    message: str


def _phase(view: GroupView, ready: bool, removing: bool, note: GroupNote | None) -> tuple[GroupPhase, str]:
    if note is not None and note.phase in ("Draining", "Deleting"):
        return note.phase, note.message  # type: ignore[return-value]
    if removing:
        return ("Draining" if view.draining else "Deleting"), ""
    if ready:
        return "Ready", ""
    if note is not None:
        return note.phase, note.message  # type: ignore[return-value]
    unscheduled = [p for p in view.pods if not p.scheduled and not p.deleting]
    if unscheduled:
        pod = unscheduled[0]
        return "Pending", f"pod {pod.name}: {pod.reason or 'not scheduled yet'}"
    waiting = [p for p in view.pods if not p.ready and not p.deleting]
    if waiting:
        pod = waiting[0]
        return "Starting", f"pod {pod.name} not ready" + (f": {pod.reason}" if pod.reason else "")
    return "Starting", "waiting for pods"


def _condition(ms: ModelServing, kind: str, status: bool, reason: str, message: str, now: float) -> Condition:
    value = "True" if status else "False"
    previous = next((c for c in (ms.status.conditions if ms.status else []) if c.type == kind), None)
    changed_at = (
        previous.last_transition_time
        if previous is not None and previous.status == value
        else format_time(now)
    )
    return Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=changed_at,
        observed_generation=ms.metadata.generation,
    )


_GANG_APIS = {
    "volcano": f"Volcano PodGroup ({L.VOLCANO_PODGROUP_API})",
    "coscheduling": f"coscheduling PodGroup ({L.COSCHEDULING_PODGROUP_API})",
}


def gang_condition_parts(ms: ModelServing, served_gangs: Set[str]) -> tuple[bool, str, str]:
    """(enforced, reason, message) of the GangScheduled condition."""
    gang = ms.gang_scheduler
    if gang == "none":
        return (
            False,
            "NoGangScheduler",
            f"schedulerName '{ms.spec.scheduler_name}' places pods one by one, so a ServingGroup can be "
            "partly placed and hold GPUs it cannot use; set schedulerName: volcano for gang scheduling",
        )
    if gang not in served_gangs:
        return (
            False,
            "PodGroupNotServed",
            f"this cluster does not serve the {_GANG_APIS[gang]} API, so pods are placed one by one; "
            "install the scheduler's CRDs (groups get their PodGroups as soon as the API appears)",
        )
    return (
        True,
        "PodGroupPerGroup",
        f"each ServingGroup is a {_GANG_APIS[gang]} with minMember {gang_min_member(ms)}: "
        "its pods are placed all together or not at all",
    )


def build_status(
    ms: ModelServing,
    views: Mapping[int, GroupView],
    notes: Mapping[int, GroupNote],
    *,
    ready: Mapping[int, bool],
    removing: Set[int],
    protected: Set[int],
    updated: Set[int],
    update_revision: str,
    current_revision: str,
    partition: int,
    rolling: bool = False,
    served_gangs: Set[str],
    now: float,
) -> ModelServingStatus:
    groups: list[ServingGroupStatus] = []
    for index, view in sorted(views.items()):
        phase, message = _phase(view, ready[index], index in removing, notes.get(index))
        groups.append(
            ServingGroupStatus(
                name=group_name(ms.name, index),
                index=index,
                phase=phase,
                # Under RoleRollingUpdate unchanged roles keep older labels; the group is still updated.
                revision=update_revision if index in updated else view.revision,
                pods=sum(1 for p in view.pods if not p.deleting),
                ready_pods=sum(1 for p in view.pods if p.ready and not p.deleting),
                surge=view.surge,
                failures=view.failures,
                message=message,
            )
        )
    staying = [g for g in groups if g.index not in removing]
    available = [g for g in staying if g.phase == "Ready"]
    at_update = [g for g in staying if g.index in updated]
    all_updated = len(at_update) == len(staying) and len(staying) == ms.spec.replicas
    current = update_revision if all_updated else current_revision
    at_current = [g for g in groups if g.revision == current]
    replicas = ms.spec.replicas

    not_ready = [g for g in groups if g.phase != "Ready"]
    describe = "; ".join(f"{g.name} {g.phase}" + (f": {g.message}" if g.message else "") for g in not_ready)
    is_available = len(available) >= replicas
    available_condition = _condition(
        ms,
        "Available",
        is_available,
        "AllGroupsReady" if is_available else "GroupsNotReady",
        f"{len(available)} of {replicas} groups ready" + (f"; {describe}" if describe else ""),
        now,
    )
    progressing = bool(not_ready) or len(staying) != replicas
    progressing_condition = _condition(
        ms,
        "Progressing",
        progressing,
        "GroupsProgressing" if progressing else "Steady",
        describe if progressing and describe else f"{len(staying)} of {replicas} groups exist",
        now,
    )
    outdated = [g for g in staying if g.index not in updated and g.index not in protected]
    held = [g for g in staying if g.index not in updated and g.index in protected]
    surge = [g for g in staying if g.surge]
    updating = bool(outdated) or bool(surge) or rolling
    if updating:
        reason, message = (
            "RollingUpdate",
            f"{len(at_update)} of {len(staying)} groups at revision {update_revision}; "
            f"to update: {', '.join(g.name for g in outdated) or 'none'}"
            + (f"; surge: {', '.join(g.name for g in surge)}" if surge else ""),
        )
    elif held:
        reason, message = (
            "PartitionReached",
            f"partition {partition} keeps {', '.join(g.name for g in held)} at revision {current_revision}",
        )
    else:
        reason, message = "UpdateComplete", f"all groups at revision {update_revision}"
    update_condition = _condition(ms, "UpdateInProgress", updating, reason, message, now)
    gang_condition = _condition(ms, "GangScheduled", *gang_condition_parts(ms, served_gangs), now)

    return ModelServingStatus(
        observed_generation=ms.metadata.generation or 0,
        replicas=len(groups),
        current_replicas=len(at_current),
        updated_replicas=len(at_update),
        available_replicas=len(available),
        current_revision=current,
        update_revision=update_revision,
        label_selector=status_label_selector(ms),
        conditions=[available_condition, progressing_condition, update_condition, gang_condition],
        groups=groups,
    )
