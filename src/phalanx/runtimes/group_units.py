"""What an autoscaler sees of one ModelServing's ServingGroups in its pods (pure), the same for the
local runtime's pods and the API server's: each group as a unit (ready, draining, pending since),
where its entry pod answers, and whether every pod of it was placed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from phalanx.api import labels as L
from phalanx.autoscale.observe.assemble import UnitState
from phalanx.autoscale.observe.batch import max_running
from phalanx.controller.observed import PodState, pod_state
from phalanx.controller.ordering import lowest_free


class Entry(Protocol):
    """Where an entry pod answers: the router's endpoint name and the base URL."""

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...


# The router's reading of a pod (`router.pods.endpoint_from_pod`, which this layer may not
# import): None for a pod that is no entry pod or has no address yet.
EntryOf = Callable[[dict[str, Any]], Entry | None]


@dataclass(frozen=True)
class GroupUnit:
    state: UnitState
    # The entry pod's router endpoint name and base URL; None while it has no address.
    endpoint: str | None = None
    url: str | None = None
    placed: bool = True  # every pod of the group was given a node (scheduled)


def group_units(
    pods: Iterable[dict[str, Any]],
    serving: str,
    entry: EntryOf,
    role: str | None = None,
    *,
    declared: int = 0,
    now: float = 0.0,
) -> list[GroupUnit]:
    """One unit per ServingGroup of `serving` that has pods, by group index (with `role`: one per
    instance of that role, by group and role index). A unit is ready when every pod of it is;
    draining when any pod is draining or being deleted (the scale-down rule drains and removes it
    as a whole); pending since its oldest pod's creation until ready.

    A ready unit's startup and batch size are its entry pod's (`startup_seconds`,
    `observe.batch.max_running`).

    `declared` is the count the spec asks for (`spec.replicas`, or the role's `replicas`): units it
    asks for whose pods the controller has not created yet are pending since `now`, unplaced, and
    named as the controller will name them (the lowest free indices). Without them a pass that runs
    between a scale-up and the pods' creation counts fewer units than were asked for: it would ask
    for them again, or take a serving just started from its file for one with no unit and lower it
    to zero at once."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if labels.get(L.NAME) != serving or (role is not None and labels.get(L.ROLE) != role):
            continue
        state = pod_state(pod)
        if state is not None and state.group_index >= 0:
            key = (state.group_index, state.role_index if role is not None else 0)
            groups.setdefault(key, []).append(pod)
    units = []
    for index in sorted(groups):
        states = [s for s in map(pod_state, groups[index]) if s is not None]
        ready = all(s.ready and not s.deleting for s in states)
        draining = any(s.deleting or s.draining_since is not None for s in states)
        created = min(s.created_at for s in states)
        found = next((e for e in map(entry, groups[index]) if e is not None), None)
        head = _entry_pod(groups[index])
        units.append(
            GroupUnit(
                state=UnitState(
                    name=f"{serving}-{index[0]}"
                    if role is None
                    else f"{serving}-{index[0]}-{role}-{index[1]}",
                    ready=ready,
                    draining=draining,
                    pending_since=None if ready else created,
                    startup_seconds=startup_seconds(head[1]) if head is not None else None,
                    max_running=max_running(head[0]) if head is not None else None,
                ),
                endpoint=found.name if found is not None else None,
                url=found.url if found is not None else None,
                placed=all(s.scheduled for s in states),
            )
        )
    # A role's `replicas` counts its instances in one group (a policy on roles needs one group).
    group = min((index[0] for index in groups), default=0)
    mine = [key for key in sorted(groups) if role is None or key[0] == group]
    staying = sum(
        1 for key, u in zip(sorted(groups), units, strict=True) if key in mine and not u.state.draining
    )
    used = {key[0] if role is None else key[1] for key in mine}
    for free in lowest_free(used, max(declared - staying, 0)):
        name = f"{serving}-{free}" if role is None else f"{serving}-{group}-{role}-{free}"
        units.append(
            GroupUnit(
                state=UnitState(name=name, ready=False, draining=False, pending_since=now), placed=False
            )
        )
    return units


def _entry_pod(pods: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], PodState] | None:
    for pod in pods:
        state = pod_state(pod)
        if state is not None and state.entry:
            return pod, state
    return None


def startup_seconds(pod: PodState) -> float | None:
    """Seconds from the pod's creation to its Ready condition's last transition, while that is its
    first ready: None for a pod not ready, or one whose container ever restarted or exited (its
    Ready flipped again later). A readiness probe that failed and passed again without a restart
    also moves the transition, and nothing on the pod tells; such a pod overstates its startup,
    which the core reads as a longer lead time (scaling up earlier), not a shorter one."""
    if not pod.ready or pod.restart_count > 0 or pod.last_exit_at is not None:
        return None
    seconds = pod.ready_changed_at - pod.created_at
    # No transition time (or no creation time) on the pod: unknown, not instant.
    return seconds if seconds > 0 else None
