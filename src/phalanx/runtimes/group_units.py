"""What an autoscaler sees of one ModelServing's ServingGroups in its pods (pure), the same for the
local runtime's pods and the API server's: each group as a unit (ready, draining, pending since),
where its entry pod answers, and whether every pod of it was placed; for a policy on roles, each
slice of a role (`slices`) as a unit."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from phalanx.api import labels as L
from phalanx.autoscale.observe.assemble import UnitState
from phalanx.autoscale.observe.batch import max_running
from phalanx.autoscale.observe.engine import UNKNOWN, UnitFields
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.controller.groups import ROLE_DRAIN_PREFIX
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
    group: int = 0  # its ServingGroup's index
    index: int = 0  # with a role: the instance's index in its group
    # The whole group is drained (scale-down, rollout of the group), not only a role instance of it.
    leaving: bool = False


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

    `declared` is the count the spec asks for (`spec.replicas`; without a role only, `slices` does
    the same for a role's instances): groups it asks for whose pods the controller has not created
    yet are pending since `now`, unplaced, and named as the controller will name them (the lowest
    free indices). Without them a pass that runs between a scale-up and the pods' creation counts
    fewer units than were asked for: it would ask for them again, or take a serving just started
    from its file for one with no unit and lower it to zero at once."""
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
                group=index[0],
                index=index[1],
                leaving=any(_group_drain(s) for s in states),
            )
        )
    if role is not None:
        return units
    # A role instance drained in every group (a role scale-down) leaves the groups in place.
    staying = sum(1 for u in units if not u.leaving)
    for free in lowest_free((u.group for u in units), max(declared - staying, 0)):
        units.append(
            GroupUnit(
                state=UnitState(name=f"{serving}-{free}", ready=False, pending_since=now),
                placed=False,
                group=free,
            )
        )
    return units


@dataclass(frozen=True)
class Slice(GroupUnit):
    """One instance of a role in every group, scaled as one: `roles[].replicas` r -> r+1 adds an
    instance to each group. `members` are its instances' unit names, by group; none has an entry
    of its own (its members' pages are read)."""

    members: tuple[str, ...] = ()


def slices(
    units: Sequence[GroupUnit],
    groups: Collection[int],
    *,
    serving: str,
    role: str,
    declared: int = 0,
    now: float = 0.0,
) -> list[Slice]:
    """The slices of `role` from its instances (`group_units` with the role), over the groups
    that stay (`groups`: their indices; instances in a group that is leaving are left out).

    The k-th instance of each group (by index) joins slice k, so a group whose scale-down drained
    another index than its neighbours' still pairs its instances; the draining instances form
    draining slices the same way. A slice is named after the lowest index of its members
    (`SERVING-ROLE-I`; a draining one ends in `-draining`). It is ready when it has a ready
    instance in every group, pending since its oldest instance not ready (`now` while one is not
    created yet), placed when every instance is (one not created is not). `declared` (the role's
    `replicas`) adds the slices the spec asks for whose instances do not exist yet, at the lowest
    free indices, pending since `now`."""
    ranked: dict[int, tuple[list[GroupUnit], list[GroupUnit]]] = {g: ([], []) for g in sorted(groups)}
    for unit in sorted(units, key=lambda u: (u.group, u.index)):
        if unit.group in ranked:
            ranked[unit.group][1 if unit.state.draining else 0].append(unit)
    found: list[Slice] = []
    for draining in (False, True):
        lists = [pair[1 if draining else 0] for pair in ranked.values()]
        for rank in range(max(map(len, lists), default=0)):
            members = [one[rank] for one in lists if rank < len(one)]
            found.append(_slice(f"{serving}-{role}", members, len(lists), draining, now))
    staying = sum(1 for s in found if not s.state.draining)
    used = {u.index for u in units if u.group in ranked}
    for free in lowest_free(used, max(declared - staying, 0)):
        state = UnitState(name=f"{serving}-{role}-{free}", ready=False, pending_since=now)
        found.append(Slice(state=state, placed=False, index=free))
    return found


def _slice(prefix: str, members: list[GroupUnit], groups: int, draining: bool, now: float) -> Slice:
    index = min(u.index for u in members)
    complete = len(members) == groups
    ready = complete and all(u.state.ready for u in members)
    since = [u.state.pending_since for u in members if not u.state.ready]
    pending = [t for t in since if t is not None] + ([] if complete else [now])
    states = [u.state for u in members]
    state = UnitState(
        name=f"{prefix}-{index}" + ("-draining" if draining else ""),
        ready=ready,
        draining=draining,
        pending_since=None if ready else min(pending, default=None),
        startup_seconds=max(
            (u.startup_seconds for u in states if u.startup_seconds is not None), default=None
        ),
        max_running=min((u.max_running for u in states if u.max_running is not None), default=None),
    )
    return Slice(
        state=state,
        # A draining slice loses instances, it is not waiting for any.
        placed=(complete or draining) and all(u.placed for u in members),
        index=index,
        members=tuple(u.state.name for u in members),
    )


def slice_fields(found: Iterable[Slice], engines: Mapping[str, UnitFields]) -> dict[str, UnitFields]:
    """Each slice's engine fields from its instances' (unit name -> fields): the counts, KV usage
    and rates the mean of the instances that know them (the core's targets are per instance), a
    p95 the worst of them; unknown when none knows."""
    combined: dict[str, UnitFields] = {}
    for one in found:
        known = [engines.get(name, UNKNOWN) for name in one.members]
        combined[one.state.name] = UnitFields(
            waiting=_mean([f.waiting for f in known]),
            running=_mean([f.running for f in known]),
            kv_usage=_mean([f.kv_usage for f in known]),
            ttft_p95=_worst([f.ttft_p95 for f in known]),
            itl_p95=_worst([f.itl_p95 for f in known]),
            prefill_queued_tokens=_mean([f.prefill_queued_tokens for f in known]),
            tokens_per_second=_mean([f.tokens_per_second for f in known]),
            prompt_tokens_per_second=_mean([f.prompt_tokens_per_second for f in known]),
            request_seconds=_mean([f.request_seconds for f in known]),
        )
    return combined


def slice_router(found: Iterable[Slice], router: RouterFigures | None, groups: int) -> RouterFigures | None:
    """The router's figures as one group sees them: a slice's in-flight count the mean of its
    instances' (those the router lists), the queue, held requests and arrival rates over the
    `groups` groups, since a slice adds an instance to each of them. Held requests are rounded
    up: one request held at zero still asks for a first slice."""
    if router is None:
        return None
    inflight = {}
    for one in found:
        mean = _mean([router.inflight.get(name) for name in one.members])
        if mean is not None:
            inflight[one.state.name] = mean
    share = max(groups, 1)

    def each(value: float | None) -> float | None:
        return value / share if value is not None else None

    return replace(
        router,
        inflight=inflight,
        queue=each(router.queue),
        held=math.ceil(router.held / share) if router.held is not None else None,
        arrivals_per_second=each(router.arrivals_per_second),
        arrival_prompt_tokens_per_second=each(router.arrival_prompt_tokens_per_second),
    )


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _worst(values: Iterable[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


def _group_drain(pod: PodState) -> bool:
    """Drained with its group, not as one role instance (the controller's drain reasons)."""
    return pod.draining_since is not None and not pod.drain_reason.startswith(ROLE_DRAIN_PREFIX)


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


@dataclass(frozen=True)
class TargetUnits:
    """What one policy scales, as both shells read it: the units the core counts per role (None:
    the ServingGroups; a role: its slices), the instance units whose entry pages are read, and how
    many groups stay (what a slice spans)."""

    units: dict[str | None, list[GroupUnit]]
    instances: list[GroupUnit]
    groups: int

    def per_unit(
        self, engines: Mapping[str, UnitFields], router: RouterFigures | None
    ) -> tuple[dict[str, UnitFields], RouterFigures | None]:
        """The instances' engine fields and the router's figures (by instance unit name) as the
        core's units see them (`slice_fields`, `slice_router`); as they are without roles."""
        if None in self.units:
            return dict(engines), router
        cut = [u for units in self.units.values() for u in units if isinstance(u, Slice)]
        return slice_fields(cut, engines), slice_router(cut, router, self.groups)


def target_units(
    pods: Sequence[dict[str, Any]],
    serving: str,
    entry: EntryOf,
    roles: Sequence[str | None],
    replicas: Callable[[str | None], int],
    now: float,
) -> TargetUnits:
    """The ServingGroups (role None) or each role's slices over the groups that stay (those not
    leaving, and those the spec asks for that are not created yet); `replicas(role)` is the count
    the spec holds (role None: spec.replicas)."""
    whole = group_units(pods, serving, entry, declared=replicas(None), now=now)
    if None in roles:
        return TargetUnits({None: whole}, whole, len(whole))
    groups = [u.group for u in whole if not u.leaving]
    units: dict[str | None, list[GroupUnit]] = {}
    instances: list[GroupUnit] = []
    for role in roles:
        if role is None:
            continue
        mine = group_units(pods, serving, entry, role)
        instances += mine
        units[role] = list(slices(mine, groups, serving=serving, role=role, declared=replicas(role), now=now))
    return TargetUnits(units, instances, len(groups))
