"""The controller core: (spec, what the runtime reports, the time) -> (actions, status, events).

Pure: no I/O, no clock, no state between calls. Everything it needs to continue after a restart is
on the objects themselves: revision labels on pods, the draining annotation on a group being
removed, the failure count on each role instance's headless Service, ControllerRevisions for the
specs of partition-protected groups.

One reconcile, in order:
1. record the spec's revision; keep the client Service;
2. finish removals in progress (drained groups and role instances are deleted);
3. group level: scale `replicas`, surge groups for a rollout, drain outdated groups within budget;
4. inside every live group: its gang object, role scaling, role rollout, recovery of failed pods,
   creation of missing pods (after backoff);
5. status and conditions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from phalanx.api import labels as L
from phalanx.api.base import scaled_value
from phalanx.api.modelserving import ModelServing, ModelServingStatus, Role
from phalanx.api.names import group_name, pod_name
from phalanx.controller import desired
from phalanx.controller.actions import Action, Annotate, Apply, Create, Decision, Delete, Event, Object
from phalanx.controller.drain import Drain, drain_progress
from phalanx.controller.groups import (
    ROLE_DRAIN_PREFIX,
    GroupView,
    RoleInstanceView,
    group_ready,
    group_spec,
    group_views,
    role_replicas,
)
from phalanx.controller.observed import (
    DRAIN_REASON_ANNOTATION,
    DRAINING_ANNOTATION,
    FAILURES_ANNOTATION,
    LAST_FAILURE_ANNOTATION,
    GangState,
    Observed,
    PodState,
    format_time,
    requests_at,
)
from phalanx.controller.ordering import lowest_free, removal_order
from phalanx.controller.recovery import Settings, backoff_until, failures
from phalanx.controller.revision import group_revision, revision_object, revision_object_name, role_revision
from phalanx.controller.status import GroupNote, build_status

ROLLOUT = "rollout"
SCALE_DOWN = "scale-down"
SURGE_RECLAIM = "surge-reclaim"


@dataclass
class _Plan:
    """What one reconcile decided so far (mutable while the decision is built, then frozen)."""

    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_at: list[float] = field(default_factory=list)
    notes: dict[int, GroupNote] = field(default_factory=dict)
    handled: set[int] = field(default_factory=set)
    rolling: bool = False  # some group is being replaced for a rollout

    def note(self, index: int, phase: str, message: str) -> None:
        current = self.notes.get(index)
        if current is None or _PHASE_RANK[phase] > _PHASE_RANK[current.phase]:
            self.notes[index] = GroupNote(phase=phase, message=message)


_PHASE_RANK = {"Starting": 0, "Pending": 1, "Recovering": 2, "BackingOff": 3, "Draining": 4, "Deleting": 5}


def reconcile(ms: ModelServing, observed: Observed, now: float, settings: Settings | None = None) -> Decision:
    return _Reconciler(ms, observed, now, settings or Settings()).run()


class _Reconciler:
    def __init__(self, ms: ModelServing, observed: Observed, now: float, settings: Settings) -> None:
        self.ms = ms
        self.observed = observed
        self.now = now
        self.settings = settings
        self.plan = _Plan()
        self.update_revision = group_revision(ms)
        self.views = group_views(observed)
        self.replicas = ms.spec.replicas
        rolling = ms.spec.rolling_update
        self.group_rollout = ms.spec.rollout_strategy.type == "ServingGroupRollingUpdate"
        self.partition = scaled_value(rolling.partition, self.replicas, round_up=True)
        self.max_surge = scaled_value(rolling.max_surge, self.replicas, round_up=True)
        unavailable = scaled_value(rolling.max_unavailable, self.replicas, round_up=False)
        # Both zero would never progress; Kubernetes then allows one unavailable, and so do we.
        self.max_unavailable = 1 if unavailable == 0 and self.max_surge == 0 else unavailable
        self.current_revision = self._current_revision()

    # ---- helpers -------------------------------------------------------------------------

    def spec_of(self, view: GroupView) -> ModelServing:
        if not self.group_rollout:
            return self.ms  # RoleRollingUpdate rolls role instances inside groups built from today's spec
        return group_spec(self.ms, view.revision, self.observed.revisions)

    def gang_served(self, spec: ModelServing) -> bool:
        """Whether the runtime can create this spec's gang object (its CRD may not be installed)."""
        return spec.gang_scheduler in self.observed.served_gangs

    def ready(self, view: GroupView) -> bool:
        return group_ready(view, self.ms, self.spec_of(view))

    def updated(self, view: GroupView) -> bool:
        """At the spec's revision: the group's (ServingGroupRollingUpdate) or every role instance's."""
        if self.group_rollout:
            return view.revision == self.update_revision
        return not self._outdated_instances(view, protected=None)

    def held(self, view: GroupView) -> bool:
        """Kept back by a partition: group-level, or every outdated instance is role-protected."""
        if self.group_rollout:
            return self.protected(view)
        outdated = self._outdated_instances(view, protected=None)
        return bool(outdated) and outdated == self._outdated_instances(view, protected=True)

    def _outdated_instances(self, view: GroupView, protected: bool | None) -> list[tuple[str, int]]:
        found = []
        wanted = {role.name: role for role in self.ms.spec.template.roles}
        for role_name, instances in view.roles.items():
            role = wanted.get(role_name)
            for instance in instances.values():
                if instance.draining:
                    continue
                hashes = {p.role_revision for p in instance.live_pods}
                if not hashes and instance.service is not None:
                    hashes = {instance.service.role_revision}
                stale = role is None or hashes != {role_revision(self.ms, role)}
                if not stale:
                    continue
                partition = (
                    scaled_value(role.partition, role.replicas, round_up=True)
                    if role and role.partition
                    else 0
                )
                is_protected = role is not None and instance.index < partition
                if protected is None or protected == is_protected:
                    found.append((role_name, instance.index))
        return found

    def serving(self, view: GroupView) -> bool:
        """Some entry pod may be answering requests: removing the group costs availability."""
        return any(p.entry and p.ready and not p.deleting for p in view.pods) and not view.draining

    def protected(self, view: GroupView) -> bool:
        return self.group_rollout and not view.surge and view.index < self.partition

    def outdated(self, view: GroupView) -> bool:
        return self.group_rollout and view.revision != self.update_revision

    def event(
        self,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        kind: str = "",
        name: str = "",
        first: bool = False,
    ) -> None:
        self.plan.events.insert(
            0 if first else len(self.plan.events),
            Event(
                type="Warning" if warning else "Normal",
                reason=reason,
                message=message,
                object_kind=kind or "ModelServing",
                object_name=name or self.ms.name,
            ),
        )

    def _current_revision(self) -> str:
        """The revision groups kept back by the partition run (StatefulSet's currentRevision)."""
        live = [v for v in self.views.values() if not v.removing and not v.surge]
        previous = self.ms.status.current_revision if self.ms.status else ""
        if previous and any(v.revision == previous for v in live):
            return previous
        if previous and self.partition > 0 and previous in self.observed.revisions:
            return previous  # a protected group may have vanished: it comes back at this revision
        old = Counter(v.revision for v in live if v.revision != self.update_revision)
        if old:
            return old.most_common(1)[0][0]
        return self.update_revision

    def _labelled(self, obj: Object, surge: bool) -> Object:
        if surge:
            obj["metadata"].setdefault("labels", {})[L.SURGE] = "true"
        return obj

    # ---- the reconcile -------------------------------------------------------------------

    def run(self) -> Decision:
        if self.update_revision not in self.observed.revisions:
            self.plan.actions.append(Create(revision_object(self.ms)))
        if not self.observed.client_service:
            self.plan.actions.append(Create(desired.client_service(self.ms)))
        for view in self.views.values():
            if view.removing:
                self._continue_removal(view)
        self._scale_groups()
        for view in self.views.values():
            if not view.removing and view.index not in self.plan.handled:
                self._reconcile_group(view)
        self._collect_revisions()
        status = build_status(
            self.ms,
            self.views,
            self.plan.notes,
            ready={i: self.ready(v) for i, v in self.views.items()},
            removing={i for i, v in self.views.items() if v.removing} | self.plan.handled,
            protected={i for i, v in self.views.items() if self.held(v)},
            updated={i for i, v in self.views.items() if self.updated(v)},
            update_revision=self.update_revision,
            current_revision=self.current_revision,
            partition=self.partition,
            rolling=self.plan.rolling,
            served_gangs=self.observed.served_gangs,
            now=self.now,
        )
        self._rollout_events(status)
        future = [t for t in self.plan.wake_at if t > self.now]
        requeue = max(min(future) - self.now, 0.05) if future else None
        draining = frozenset(
            p.name for p in self.observed.pods if p.entry and (p.draining_since is not None or p.deleting)
        )
        return Decision(
            actions=tuple(self.plan.actions),
            status=status,
            events=tuple(self.plan.events),
            requeue_after=requeue,
            draining=draining,
        )

    def _rollout_events(self, status: ModelServingStatus) -> None:
        """Announce a rollout's start and end (from the condition's flip, so a restart repeats neither)."""
        before = _condition_reason(self.ms.status, "UpdateInProgress")
        after = _condition_reason(status, "UpdateInProgress")
        if after == before:
            return
        if after == "RollingUpdate":
            outdated = sum(1 for g in status.groups if g.revision != self.update_revision)
            self.event(
                first=True,
                reason="RolloutStarted",
                message=f"rolling {outdated} group(s) to revision {self.update_revision} (maxUnavailable "
                f"{self.max_unavailable}, maxSurge {self.max_surge}, partition {self.partition})",
            )
        elif after == "PartitionReached":
            self.event("RolloutPaused", f"rollout stopped at partition {self.partition}")
        elif after == "UpdateComplete" and before:
            self.event("RolloutComplete", f"every group runs revision {self.update_revision}")

    # ---- group level ---------------------------------------------------------------------

    def _scale_groups(self) -> None:
        live = [v for v in self.views.values() if not v.removing]
        regular = [v for v in live if not v.surge]
        surge = [v for v in live if v.surge]
        # A group drained for a rollout keeps its ordinal: its replacement waits for it to be gone.
        replacing = [v for v in self.views.values() if v.removing and _drain_reason(v) == ROLLOUT]
        self.plan.rolling = bool(replacing)
        used = set(self.views)

        missing = self.replicas - len(regular) - len(replacing)
        if missing > 0:
            for index in lowest_free(used, missing):
                used.add(index)
                protected = self.group_rollout and index < self.partition
                revision = self.current_revision if protected else self.update_revision
                self._create_group(index, revision, surge=False)
        elif missing < 0 and len(regular) > self.replicas:
            excess = len(regular) - self.replicas
            order = removal_order(
                regular,
                ready=self.ready,
                cost=lambda v: v.deletion_cost,
                ordinal=lambda v: v.index,
                protected=self.protected,
            )
            for view in order[:excess]:
                self._remove_group(view, SCALE_DOWN)

        if not self.group_rollout:
            return
        outdated = [
            v
            for v in regular
            if self.outdated(v) and not self.protected(v) and v.index not in self.plan.handled
        ]
        # Updated groups still coming up. One whose pods cannot be placed is not counted: the
        # surge group may hold exactly the GPUs it waits for.
        still_starting = [
            v
            for v in regular
            if not self.outdated(v)
            and not self.ready(v)
            and all(p.scheduled for p in v.pods if not p.deleting)
        ]
        unfinished = len(outdated) + len(replacing) + len(still_starting) + max(missing, 0)
        if outdated and self.replicas > 0:
            surge_wanted = min(self.max_surge, unfinished)
        elif surge and unfinished:
            surge_wanted = len(surge)  # keep, but add none: nothing is left to drain
        else:
            surge_wanted = 0
        if len(surge) < surge_wanted:
            for index in lowest_free(used, surge_wanted - len(surge), start=self.replicas):
                used.add(index)
                self._create_group(index, self.update_revision, surge=True)
        available = sum(
            1 for v in live if v.index not in self.plan.handled and self.ready(v) and not v.draining
        )
        budget = available - max(self.replicas - self.max_unavailable, 0)
        if len(surge) > surge_wanted:
            order = removal_order(
                surge, ready=self.ready, cost=lambda v: v.deletion_cost, ordinal=lambda v: v.index
            )
            for view in order[: len(surge) - surge_wanted]:
                if self.serving(view):
                    if budget <= 0:
                        continue
                    budget -= 1
                self._remove_group(view, SURGE_RECLAIM)
        # Groups that serve nothing cost no availability; serving ones go highest ordinal first.
        for view in sorted(outdated, key=lambda v: (self.serving(v), -v.index)):
            if view.index in self.plan.handled:
                continue
            if self.serving(view):
                if budget <= 0:
                    self.plan.note(view.index, "Starting", "waiting for maxUnavailable budget to roll")
                    continue
                budget -= 1
            self._remove_group(view, ROLLOUT)
            self.plan.rolling = True

    def _create_group(self, index: int, revision: str, *, surge: bool) -> None:
        spec = self.observed.revisions.get(revision, self.ms) if revision != self.update_revision else self.ms
        spec = _with_current_replicas(self.ms, spec)
        objects = [
            self._labelled(obj, surge)
            for obj in desired.group_objects(spec, index, with_gang=self.gang_served(spec))
        ]
        if not objects:
            return  # no pods and no gang object: the group has nothing to exist as
        self.plan.actions.extend(Create(obj) for obj in objects)
        pods = sum(1 for obj in objects if obj["kind"] == "Pod")
        kind = "surge group" if surge else "group"
        self.event(
            "GroupCreated",
            f"created {kind} {group_name(self.ms.name, index)} at revision {revision} "
            f"({pods} {'pod' if pods == 1 else 'pods'})",
        )
        self.plan.handled.add(index)  # nothing more to do for it in this pass
        self.plan.note(index, "Starting", "creating pods")

    def _remove_group(self, view: GroupView, reason: str) -> None:
        """Drain a group that may be serving; delete one that cannot be (no ready entry pod)."""
        self.plan.handled.add(view.index)
        name = group_name(self.ms.name, view.index)
        self._mark_draining(view.pods, reason)
        if self.serving(view):
            self.event("GroupDraining", f"draining group {name} ({reason}): no new requests are routed to it")
            self.plan.note(view.index, "Draining", f"draining ({reason})")
            self.plan.wake_at.append(self.now + self.settings.drain_settle)
        else:
            self._delete_group(view, reason)

    def _mark_draining(self, pods: tuple[PodState, ...], reason: str) -> None:
        """Even a group deleted at once is marked first: a restarted controller then still knows
        it was removed on purpose (and for a rollout, that its ordinal waits for a replacement)."""
        stamp = format_time(self.now)
        for pod in pods:
            if not pod.deleting:
                self.plan.actions.append(
                    Annotate("Pod", pod.name, {DRAINING_ANNOTATION: stamp, DRAIN_REASON_ANNOTATION: reason})
                )

    def _continue_removal(self, view: GroupView) -> None:
        since = view.draining_since
        if not view.services and view.gang is None and all(p.deleting for p in view.pods):
            self.plan.note(view.index, "Deleting", f"deleting ({_drain_reason(view) or 'removed'})")
            return  # everything is going: wait for the pods to terminate
        if since is None:
            self._delete_group(view, _drain_reason(view) or SCALE_DOWN, announce=False)
            return
        drain = self._drained(view.pods, since, self.spec_of(view))
        if drain.done:
            self._delete_group(view, _drain_reason(view))
        else:
            self.plan.wake_at.append(drain.wake_at)
            self.plan.note(view.index, "Draining", drain.message)

    def _drained(self, pods: tuple[PodState, ...], since: float, spec: ModelServing) -> Drain:
        counts = [requests_at(p, self.observed.in_flight) for p in pods if p.entry]
        return drain_progress(counts, since, self.now, _drain_timeout(spec, self.settings), self.settings)

    def _delete_group(self, view: GroupView, reason: str, *, announce: bool = True) -> None:
        self.plan.handled.add(view.index)
        for pod in view.pods:
            if not pod.deleting:
                self.plan.actions.append(Delete("Pod", pod.name))
        for service in view.services:
            self.plan.actions.append(Delete("Service", service.name))
        if view.gang is not None:
            self.plan.actions.append(Delete("PodGroup", view.gang.name))
        name = group_name(self.ms.name, view.index)
        if announce:
            self.event("GroupDeleted", f"deleted group {name} ({reason})")
        self.plan.note(view.index, "Deleting", f"deleting ({reason})")

    # ---- inside one group ----------------------------------------------------------------

    def _reconcile_group(self, view: GroupView) -> None:
        spec = _with_current_replicas(self.ms, self.spec_of(view))
        if self.outdated(view) and view.revision not in self.observed.revisions:
            # Its spec is not recorded (the ControllerRevision was deleted): building it from today's
            # spec would mix revisions inside one engine. Leave it; a rollout replaces it.
            self.plan.note(
                view.index, "Starting", f"the spec of revision {view.revision} is gone; group left as it is"
            )
            return
        surge = view.surge
        gang = desired.gang_object(spec, view.index) if self.gang_served(spec) else None
        if gang is not None and view.gang is None:
            self.plan.actions.append(Create(self._labelled(gang, surge)))
        elif gang is not None and view.gang is not None and _drifted(gang, view.gang):
            self.plan.actions.append(Apply(self._labelled(gang, surge)))  # role scaling, queue, topology
        if view.gang is not None and view.gang.message:
            self.plan.note(view.index, "Pending", f"{view.gang.name}: {view.gang.message}")
        wanted_roles = {role.name for role in spec.spec.template.roles}
        self._subdomain_services(view, spec, wanted_roles, surge)
        group_failed = self._recover(view, spec)
        for role_name, instances in view.roles.items():
            if role_name not in wanted_roles:
                for instance in instances.values():
                    if instance.draining:
                        self._continue_instance_removal(view, instance, spec)
                    else:
                        self._remove_instance(view, instance, spec, "removed")
        if group_failed:
            return
        for role in spec.spec.template.roles:
            self._reconcile_role(view, spec, role, surge)

    def _subdomain_services(
        self, view: GroupView, spec: ModelServing, wanted_roles: set[str], surge: bool
    ) -> None:
        """One per role (groups made by an older Phalanx get theirs here, without a restart),
        labelled with the group's revision; a removed role's goes once its role instances are gone."""
        present = {s.role: s for s in view.services if s.subdomain}
        revision = group_revision(spec)
        for role in spec.spec.template.roles:
            service = present.get(role.name)
            if service is None:
                obj = desired.subdomain_service(spec, view.index, role)
                self.plan.actions.append(Create(self._labelled(obj, surge)))
            elif service.revision != revision:
                obj = desired.subdomain_service(spec, view.index, role)
                self.plan.actions.append(Apply(self._labelled(obj, surge)))
        for role_name, service in present.items():
            if role_name not in wanted_roles and not view.instances(role_name):
                self.plan.actions.append(Delete("Service", service.name))

    def _reconcile_role(self, view: GroupView, spec: ModelServing, role: Role, surge: bool) -> None:
        instances = view.instances(role.name)
        live = [i for i in instances.values() if not i.draining]
        wanted = role.replicas
        role_rollout = not self.group_rollout
        role_partition = (
            scaled_value(role.partition, wanted, round_up=True) if role_rollout and role.partition else 0
        )
        current_hash = role_revision(spec, role)
        replacing = [
            i
            for i in instances.values()
            if i.draining and _instance_drain_reason(i) == ROLE_DRAIN_PREFIX + ROLLOUT
        ]
        missing = wanted - len(live) - len(replacing)
        if missing > 0:
            for index in lowest_free(instances.keys(), missing):
                self._create_instance(view, spec, role, index, surge)
        elif len(live) > wanted:
            order = removal_order(
                live,
                ready=lambda i: i.ready(role.group_size),
                cost=lambda i: i.deletion_cost,
                ordinal=lambda i: i.index,
                protected=lambda i: i.index < role_partition,
            )
            for instance in order[: len(live) - wanted]:
                self._remove_instance(view, instance, spec, SCALE_DOWN)
            live = [i for i in live if i not in order[: len(live) - wanted]]
        for instance in instances.values():
            if instance.draining:
                self._continue_instance_removal(view, instance, spec)
        if role_rollout:
            rolled = self._roll_role(view, spec, role, live, role_partition, current_hash)
            live = [i for i in live if i.index not in rolled]
        for instance in live:
            self._ensure_instance(view, spec, role, instance, surge, instance.index < role_partition)

    def _roll_role(
        self,
        view: GroupView,
        spec: ModelServing,
        role: Role,
        live: list[RoleInstanceView],
        partition: int,
        current_hash: str,
    ) -> set[int]:
        """Replaces outdated role instances within the role's maxUnavailable; returns those removed."""
        outdated = [
            i
            for i in live
            if i.index >= partition and any(p.role_revision != current_hash for p in i.live_pods)
        ]
        if not outdated:
            return set()
        ready = sum(1 for i in live if i.ready(role.group_size))
        limit = role.max_unavailable
        max_unavailable = (
            max(scaled_value(limit, role.replicas, round_up=False), 1) if limit is not None else role.replicas
        )
        budget = ready - max(role.replicas - max_unavailable, 0)
        removed: set[int] = set()
        for instance in sorted(outdated, key=lambda i: (i.ready(role.group_size), -i.index)):
            if instance.ready(role.group_size):
                if budget <= 0:
                    continue
                budget -= 1
            self._remove_instance(view, instance, spec, ROLLOUT)
            removed.add(instance.index)
        return removed

    def _create_instance(
        self, view: GroupView, spec: ModelServing, role: Role, index: int, surge: bool
    ) -> None:
        objects = desired.role_instance_objects(spec, view.index, role, index)
        self.plan.actions.extend(Create(self._labelled(obj, surge)) for obj in objects)
        self.event(
            "RoleInstanceCreated",
            f"created role instance {role.name}-{index} in group {group_name(self.ms.name, view.index)}",
        )
        self.plan.note(view.index, "Starting", f"creating role instance {role.name}-{index}")

    def _remove_instance(
        self, view: GroupView, instance: RoleInstanceView, spec: ModelServing, reason: str
    ) -> None:
        reason = ROLE_DRAIN_PREFIX + reason
        serving = any(p.entry and p.ready and not p.deleting for p in instance.pods)
        label = f"{instance.role}-{instance.index} of group {group_name(self.ms.name, view.index)}"
        if instance.draining:
            return
        self._mark_draining(instance.live_pods, reason)
        if serving:
            self.event("RoleInstanceDraining", f"draining role instance {label} ({reason})")
            self.plan.wake_at.append(self.now + self.settings.drain_settle)
        else:
            self._delete_instance(instance, label, reason)
        self.plan.note(view.index, "Starting", f"{reason}: role instance {label}")

    def _continue_instance_removal(
        self, view: GroupView, instance: RoleInstanceView, spec: ModelServing
    ) -> None:
        since = instance.draining_since
        if since is None or (not instance.live_pods and instance.service is None):
            return  # nothing left but terminating pods
        drain = self._drained(instance.pods, since, spec)
        label = f"{instance.role}-{instance.index} of group {group_name(self.ms.name, view.index)}"
        if drain.done:
            self._delete_instance(instance, label, _instance_drain_reason(instance))
        else:
            self.plan.wake_at.append(drain.wake_at)

    def _delete_instance(self, instance: RoleInstanceView, label: str, reason: str) -> None:
        for pod in instance.live_pods:
            self.plan.actions.append(Delete("Pod", pod.name))
        if instance.service is not None:
            self.plan.actions.append(Delete("Service", instance.service.name))
        self.event("RoleInstanceDeleted", f"deleted role instance {label} ({reason})")

    def _instance_spec(
        self, spec: ModelServing, role: Role, instance: RoleInstanceView, protected: bool
    ) -> ModelServing | None:
        """The spec an instance's new pods come from. Under RoleRollingUpdate an instance keeps the
        role template it runs while it has surviving pods (one engine, one version) or while the
        role partition protects it; None when that template is no longer recorded."""
        if self.group_rollout:
            return spec
        survivors = {p.role_revision for p in instance.live_pods}
        recorded = instance.service.role_revision if instance.service else ""
        running = next(iter(survivors)) if len(survivors) == 1 else recorded
        if not running or running == role_revision(spec, role) or not (survivors or protected):
            return spec
        for candidate in (self.ms, *self.observed.revisions.values()):
            old_role = candidate.spec.template.role(role.name)
            if old_role is not None and role_revision(candidate, old_role) == running:
                return _with_current_replicas(self.ms, candidate)
        return None

    def _ensure_instance(
        self,
        view: GroupView,
        spec: ModelServing,
        role: Role,
        instance: RoleInstanceView,
        surge: bool,
        protected: bool = False,
    ) -> None:
        """Recreate what is missing: its headless Service, and its pods once the old ones are gone."""
        own_spec = self._instance_spec(spec, role, instance, protected)
        if own_spec is None:
            self.plan.note(
                view.index,
                "Starting",
                f"the template role instance {role.name}-{instance.index} runs is no longer recorded",
            )
            return
        spec = own_spec
        role = spec.spec.template.role(role.name) or role
        if instance.service is None:
            service = desired.headless_service(spec, view.index, role, instance.index)
            self.plan.actions.append(Create(self._labelled(service, surge)))
        if any(p.deleting for p in instance.pods):
            return  # a recreate in progress: start the new pods together once the old are gone
        present = {p.name for p in instance.pods}
        names = [
            (index, pod_name(self.ms.name, view.index, role.name, instance.index, index))
            for index in range(role.group_size)
        ]
        absent = [(index, name) for index, name in names if name not in present]
        if not absent:
            self._maybe_reset_failures(view, instance, role)
            return
        if present and self.ms.spec.recovery_policy != "None" and _started(instance):
            return  # a pod vanished from a running instance: _recover handles it by policy
        due = backoff_until(
            instance.failures, instance.service.last_failure if instance.service else None, self.settings
        )
        if due is not None and self.now < due:
            self.plan.wake_at.append(due)
            self.plan.note(
                view.index,
                "BackingOff",
                # No countdown in the message: status would change on every pass.
                f"role instance {role.name}-{instance.index} failed {instance.failures} times in a row; "
                f"recreating at {format_time(due)}",
            )
            return
        if instance.service is not None and instance.service.role_revision != role_revision(spec, role):
            service = desired.headless_service(spec, view.index, role, instance.index)
            self.plan.actions.append(Apply(self._labelled(service, surge)))  # it records the template
        for index, _ in absent:
            self.plan.actions.append(
                Create(self._labelled(desired.pod(spec, view.index, role, instance.index, index), surge))
            )
        if present:
            self.event(
                "PodCreated", f"recreated {len(absent)} pod(s) of role instance {role.name}-{instance.index}"
            )
        self.plan.note(view.index, "Starting", f"starting role instance {role.name}-{instance.index}")

    def _maybe_reset_failures(self, view: GroupView, instance: RoleInstanceView, role: Role) -> None:
        if instance.failures == 0 or instance.service is None or not instance.ready(role.group_size):
            return
        since = max(p.ready_changed_at for p in instance.live_pods)
        if self.now >= since + self.settings.failure_reset_after:
            self.plan.actions.append(
                Annotate(
                    "Service",
                    instance.service.name,
                    {FAILURES_ANNOTATION: None, LAST_FAILURE_ANNOTATION: None},
                )
            )
        else:
            self.plan.wake_at.append(since + self.settings.failure_reset_after)

    # ---- recovery ------------------------------------------------------------------------

    def _recover(self, view: GroupView, spec: ModelServing) -> bool:
        """Applies the recovery policy to failed or vanished pods; True when the whole group restarts."""
        policy = self.ms.spec.recovery_policy
        grace = float(spec.spec.template.restart_grace_period_seconds)
        triggered: list[tuple[RoleInstanceView, list[str]]] = []
        for role in spec.spec.template.roles:
            for instance in view.instances(role.name).values():
                if instance.draining or any(p.deleting for p in instance.pods):
                    continue
                reasons = []
                failed_pods = []
                for failure in failures(instance.pods, grace):
                    if failure.due <= self.now:
                        reasons.append(failure.describe())
                        failed_pods.append(failure.pod.name)
                    else:
                        self.plan.wake_at.append(failure.due)
                        self.plan.note(
                            view.index, "Recovering", f"{failure.describe()}; grace period running"
                        )
                present = {p.pod_index for p in instance.pods}
                vanished = [
                    pod_name(self.ms.name, view.index, role.name, instance.index, i)
                    for i in range(role.group_size)
                    if i not in present
                ]
                # Under None a missing pod is simply created again below, uncounted: the pod a None
                # recovery deleted goes missing too, and nothing tells the two apart.
                if present and vanished and policy != "None" and _started(instance):
                    reasons += [f"pod {name} is gone" for name in vanished]
                if reasons:
                    triggered.append((instance, reasons))
                    if policy == "None":
                        for name in failed_pods:
                            self.plan.actions.append(Delete("Pod", name))
                        self._record_failure(instance, reasons, "PodRecreate")
        if not triggered or policy == "None":
            return False
        if policy == "ServingGroupRecreate":
            for pod in view.pods:
                if not pod.deleting:
                    self.plan.actions.append(Delete("Pod", pod.name))
            for instances in view.roles.values():
                for instance in instances.values():
                    self._bump_failures(instance)
            reasons = [r for _, rs in triggered for r in rs]
            name = group_name(self.ms.name, view.index)
            self.event("GroupRecreate", f"recreating group {name}: {'; '.join(reasons)}", warning=True)
            self.plan.note(view.index, "Recovering", f"recreating: {'; '.join(reasons)}")
            return True
        for instance, reasons in triggered:
            for pod in instance.live_pods:
                self.plan.actions.append(Delete("Pod", pod.name))
            self._record_failure(instance, reasons, "RoleRecreate")
            self.plan.note(
                view.index, "Recovering", f"recreating role instance {instance.role}-{instance.index}"
            )
        return False

    def _record_failure(self, instance: RoleInstanceView, reasons: list[str], reason: str) -> None:
        count = self._bump_failures(instance)
        self.event(
            reason,
            f"recreating role instance {instance.role}-{instance.index} (failure {count} in a row): "
            + "; ".join(reasons),
            warning=True,
        )

    def _bump_failures(self, instance: RoleInstanceView) -> int:
        count = instance.failures + 1
        if instance.service is not None:
            self.plan.actions.append(
                Annotate(
                    "Service",
                    instance.service.name,
                    {FAILURES_ANNOTATION: str(count), LAST_FAILURE_ANNOTATION: format_time(self.now)},
                )
            )
        return count

    # ---- revisions -----------------------------------------------------------------------

    def _collect_revisions(self) -> None:
        """Drop recorded specs no group runs any more (keeping the current and update revisions)."""
        in_use = {self.update_revision, self.current_revision}
        in_use |= {p.revision for p in self.observed.pods} | {s.revision for s in self.observed.services}
        in_use |= {g.revision for g in self.observed.gangs}
        for revision in self.observed.revisions:
            if revision not in in_use:
                self.plan.actions.append(
                    Delete("ControllerRevision", revision_object_name(self.ms.name, revision))
                )


def _started(instance: RoleInstanceView) -> bool:
    """Some pod of the instance has run: a pod missing now has vanished, not failed to be created."""
    return any(p.phase != "Pending" or p.ready or p.restart_count > 0 for p in instance.pods)


def _drifted(desired_gang: Object, observed: GangState) -> bool:
    """Compares only the fields we set: servers add defaults (e.g. Volcano's queue) we must not fight."""
    spec = desired_gang["spec"]
    if any(observed.spec.get(key) != value for key, value in spec.items()):
        return True
    wanted: str = desired_gang["metadata"]["labels"].get(L.REVISION, "")
    return observed.revision != wanted


def _condition_reason(status: ModelServingStatus | None, kind: str) -> str:
    if status is None:
        return ""
    return next((c.reason for c in status.conditions if c.type == kind), "")


def _drain_reason(view: GroupView) -> str:
    return next((p.drain_reason for p in view.pods if p.drain_reason), "")


def _instance_drain_reason(instance: RoleInstanceView) -> str:
    return next((p.drain_reason for p in instance.pods if p.drain_reason), "")


def _drain_timeout(spec: ModelServing, settings: Settings) -> float:
    grace = spec.spec.template.roles[0].entry_template.spec.get("terminationGracePeriodSeconds")
    return float(grace) if isinstance(grace, int) else settings.default_drain_timeout


def _with_current_replicas(current: ModelServing, spec: ModelServing) -> ModelServing:
    """An older revision's spec with today's role replica counts (replicas are never part of a revision)."""
    if spec is current:
        return spec
    roles = [
        role.model_copy(update={"replicas": role_replicas(current, role)})
        for role in spec.spec.template.roles
    ]
    template = spec.spec.template.model_copy(update={"roles": roles})
    return spec.model_copy(update={"spec": spec.spec.model_copy(update={"template": template})})
