"""ServingGroups and role instances as the runtime shows them, rebuilt from labels on every reconcile."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from phalanx.api.modelserving import ModelServing, Role
from phalanx.controller.observed import GangState, Observed, PodState, ServiceState
from phalanx.controller.revision import group_revision


@dataclass(frozen=True)
class RoleInstanceView:
    role: str
    index: int
    pods: tuple[PodState, ...] = ()
    service: ServiceState | None = None

    @property
    def live_pods(self) -> tuple[PodState, ...]:
        return tuple(p for p in self.pods if not p.deleting)

    def ready(self, size: int) -> bool:
        live = self.live_pods
        return len(live) == size and all(p.ready for p in live)

    @property
    def draining(self) -> bool:
        return any(p.draining_since is not None for p in self.pods)

    @property
    def draining_since(self) -> float | None:
        times = [p.draining_since for p in self.pods if p.draining_since is not None]
        return min(times) if times else None

    @property
    def failures(self) -> int:
        return self.service.failures if self.service else 0

    @property
    def deletion_cost(self) -> int:
        return sum(p.deletion_cost for p in self.pods)


@dataclass(frozen=True)
class GroupView:
    index: int
    pods: tuple[PodState, ...] = ()
    services: tuple[ServiceState, ...] = ()
    gang: GangState | None = None
    roles: Mapping[str, Mapping[int, RoleInstanceView]] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        """The revision most of the group's live pods carry (they all agree outside a role rollout)."""
        counts = Counter(p.revision for p in self.pods if not p.deleting)
        if not counts:  # every pod is being recreated: the Services and gang still say
            counts = Counter(s.revision for s in self.services if s.revision)
        if not counts and self.gang is not None and self.gang.revision:
            return self.gang.revision
        if not counts:
            counts = Counter(p.revision for p in self.pods)
        return counts.most_common(1)[0][0] if counts else ""

    @property
    def surge(self) -> bool:
        return (
            any(p.surge for p in self.pods)
            or any(s.surge for s in self.services)
            or bool(self.gang and self.gang.surge)
        )

    @property
    def draining(self) -> bool:
        """The whole group is being drained (role-instance drains are marked `role-...`)."""
        return any(_group_drain(p) for p in self.pods)

    @property
    def draining_since(self) -> float | None:
        times = [p.draining_since for p in self.pods if _group_drain(p) and p.draining_since is not None]
        return min(times) if times else None

    @property
    def removing(self) -> bool:
        """Being drained or deleted as a whole (scale-down, rollout, surge reclaim)."""
        if self.draining:
            return True
        return not self.services and self.gang is None and all(p.deleting for p in self.pods)

    @property
    def deletion_cost(self) -> int:
        return sum(p.deletion_cost for p in self.pods)

    @property
    def failures(self) -> int:
        return max((s.failures for s in self.services), default=0)

    def instances(self, role: str) -> Mapping[int, RoleInstanceView]:
        return self.roles.get(role, {})


ROLE_DRAIN_PREFIX = "role-"


def _group_drain(pod: PodState) -> bool:
    return pod.draining_since is not None and not pod.drain_reason.startswith(ROLE_DRAIN_PREFIX)


def group_views(observed: Observed) -> dict[int, GroupView]:
    pods: dict[int, list[PodState]] = {}
    services: dict[int, list[ServiceState]] = {}
    gangs: dict[int, GangState] = {}
    for pod in observed.pods:
        pods.setdefault(pod.group_index, []).append(pod)
    for service in observed.services:
        services.setdefault(service.group_index, []).append(service)
    for gang in observed.gangs:
        gangs[gang.group_index] = gang
    views: dict[int, GroupView] = {}
    for index in sorted(set(pods) | set(services) | set(gangs)):
        if index < 0:
            continue
        group_pods = tuple(sorted(pods.get(index, []), key=lambda p: (p.role, p.role_index, p.pod_index)))
        group_services = tuple(services.get(index, []))
        views[index] = GroupView(
            index=index,
            pods=group_pods,
            services=group_services,
            gang=gangs.get(index),
            roles=_role_instances(group_pods, group_services),
        )
    return views


def _role_instances(
    pods: Iterable[PodState], services: Iterable[ServiceState]
) -> dict[str, dict[int, RoleInstanceView]]:
    members: dict[tuple[str, int], list[PodState]] = {}
    by_key: dict[tuple[str, int], ServiceState] = {}
    for pod in pods:
        members.setdefault((pod.role, pod.role_index), []).append(pod)
    for service in services:
        if not service.subdomain:
            by_key[(service.role, service.role_index)] = service
    roles: dict[str, dict[int, RoleInstanceView]] = {}
    for key in sorted(set(members) | set(by_key)):
        role, index = key
        roles.setdefault(role, {})[index] = RoleInstanceView(
            role=role, index=index, pods=tuple(members.get(key, ())), service=by_key.get(key)
        )
    return roles


def role_replicas(current: ModelServing, role: Role) -> int:
    """Role replica counts come from the current spec: they are not part of any revision."""
    live = current.spec.template.role(role.name)
    return live.replicas if live is not None else role.replicas


def group_spec(current: ModelServing, revision: str, revisions: Mapping[str, ModelServing]) -> ModelServing:
    """The spec a group at `revision` is built from: the current one, or the recorded older one."""
    if revision == group_revision(current) or revision not in revisions:
        return current
    return revisions[revision]


def group_ready(view: GroupView, current: ModelServing, spec: ModelServing) -> bool:
    """Every role instance the group should have exists, and every one of its pods is ready."""
    for role in spec.spec.template.roles:
        instances = view.instances(role.name)
        wanted = role_replicas(current, role)
        ready = [i for i in instances.values() if not i.draining and i.ready(role.group_size)]
        if len(ready) < wanted:
            return False
    return not view.draining
