"""What `phalanx up`'s autoscaler adds to the group units (`runtimes.group_units`, pure): the GPUs
one group needs and how many more groups the local GPU inventory can place, for one role alone or
for the roles' new units together."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from phalanx.autoscale.placement import Fits
from phalanx.runtimes.group_units import GroupUnit
from phalanx.runtimes.local.scheduler import gpu_need


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
    return max(free_gpus // per_group - unplaced(units), 0)


def unplaced(units: Iterable[GroupUnit]) -> int:
    """Units still waiting for their GPUs (a draining one will never take them)."""
    return sum(1 for u in units if not u.placed and not u.state.draining)


def gpu_room(
    free_gpus: int, per_unit: Mapping[str, int], units: Mapping[str, Iterable[GroupUnit]]
) -> Fits | None:
    """Whether more units of each role fit the free GPUs together, after every role's units
    already waiting for theirs; None (no limit the runtime knows) when no role's unit needs a GPU."""
    if all(gpus <= 0 for gpus in per_unit.values()):
        return None
    waiting = sum(per_unit.get(role, 0) * unplaced(found) for role, found in units.items())

    def fits(more: Mapping[str, int]) -> bool:
        return waiting + sum(count * per_unit.get(role, 0) for role, count in more.items()) <= free_gpus

    return fits
