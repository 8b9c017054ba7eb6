"""What `phalanx up`'s autoscaler sees of one ModelServing's ServingGroups (pure): each group as a
unit (ready, draining, pending since), where its entry pod answers, and how many more groups the
local GPU inventory can place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.api import labels as L
from phalanx.autoscale.observe.assemble import UnitState
from phalanx.controller.observed import pod_state
from phalanx.router.pods import endpoint_from_pod
from phalanx.runtimes.local.scheduler import gpu_need


@dataclass(frozen=True)
class GroupUnit:
    state: UnitState
    # The entry pod's router endpoint name and base URL; None while it has no address.
    endpoint: str | None = None
    url: str | None = None
    placed: bool = True  # every pod of the group was given its GPUs (scheduled)


def group_units(pods: Iterable[Mapping[str, Any]], serving: str, role: str | None = None) -> list[GroupUnit]:
    """One unit per ServingGroup of `serving` that has pods, by group index (with `role`: one per
    instance of that role, by group and role index). A unit is ready when every pod of it is;
    draining when any pod is draining or being deleted (the scale-down rule drains and removes it
    as a whole); pending since its oldest pod's creation until ready."""
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(L.NAME) != serving or (role is not None and labels.get(L.ROLE) != role):
            continue
        state = pod_state(pod)  # type: ignore[arg-type]
        if state is not None and state.group_index >= 0:
            key = (state.group_index, state.role_index if role is not None else 0)
            groups.setdefault(key, []).append(pod)
    units = []
    for index in sorted(groups):
        states = [s for s in map(pod_state, groups[index]) if s is not None]  # type: ignore[arg-type]
        ready = all(s.ready and not s.deleting for s in states)
        draining = any(s.deleting or s.draining_since is not None for s in states)
        created = min(s.created_at for s in states)
        entry = next((e for e in map(endpoint_from_pod, groups[index]) if e is not None), None)
        units.append(
            GroupUnit(
                state=UnitState(
                    name=f"{serving}-{index[0]}"
                    if role is None
                    else f"{serving}-{index[0]}-{role}-{index[1]}",
                    ready=ready,
                    draining=draining,
                    pending_since=None if ready else created,
                ),
                endpoint=entry.name if entry is not None else None,
                url=entry.url if entry is not None else None,
                placed=all(s.scheduled for s in states),
            )
        )
    return units


def gpus_per_unit(serving: Mapping[str, Any], role: str | None = None) -> int:
    """GPUs one ServingGroup of the ModelServing (its `to_dict()`) asks for, all roles together;
    with `role`, one instance of that role."""
    roles = ((serving.get("spec") or {}).get("template") or {}).get("roles") or []
    total = 0
    for spec in roles:
        if role is not None and spec.get("name") != role:
            continue
        entry = gpu_need((spec.get("entryTemplate") or {}).get("spec") or {})
        worker = gpu_need((spec.get("workerTemplate") or {}).get("spec") or {})
        instances = 1 if role is not None else int(spec.get("replicas", 1))
        total += instances * (entry + int(spec.get("workerReplicas", 0)) * worker)
    return total


def placeable(per_group: int, free_gpus: int, units: Iterable[GroupUnit]) -> int | None:
    """More groups the free GPUs hold, after the groups already waiting for GPUs; None (no limit
    the runtime knows) when a group needs no GPU."""
    if per_group <= 0:
        return None
    unplaced = sum(1 for u in units if not u.placed and not u.state.draining)
    return max(free_gpus // per_group - unplaced, 0)
