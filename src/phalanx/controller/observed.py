"""What a runtime reports, as plain data: the controller core decides from this and nothing else.

Both runtimes hand the core Kubernetes-shaped objects (the local runtime writes the same `status`
fields a kubelet would); the functions here read them into small frozen records. Everything the
core needs after a restart is on these objects: labels, annotations, phases, timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing

Object = dict[str, Any]
PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]

# Annotations the controller writes on the objects it owns, so its decisions survive a restart.
DRAINING_ANNOTATION = L.API_GROUP + "/draining-since"  # pods of a group being drained (RFC 3339)
DRAIN_REASON_ANNOTATION = L.API_GROUP + "/drain-reason"  # scale-down | rollout | surge
FAILURES_ANNOTATION = L.API_GROUP + "/failures"  # recoveries in a row, on the role instance's Service
LAST_FAILURE_ANNOTATION = L.API_GROUP + "/last-failure"  # when the last recovery started (RFC 3339)


# How long before readiness turns False a container exit still counts as the cause: a readiness
# probe notices an exit up to periodSeconds x failureThreshold later (30 s with the defaults).
RESTART_WINDOW = 60.0


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _int(value: object, default: int = 0) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


@dataclass(frozen=True)
class PodState:
    name: str
    group_index: int
    role: str
    role_index: int
    pod_index: int
    revision: str
    role_revision: str
    phase: PodPhase = "Pending"
    scheduled: bool = False
    ready: bool = False
    restart_count: int = 0
    created_at: float = 0.0
    # When `ready` last changed; the creation time until the pod was ever ready.
    ready_changed_at: float = 0.0
    deleting: bool = False
    deletion_cost: int = 0
    draining_since: float | None = None
    drain_reason: str = ""
    # Why the pod is not ready, in words a user can act on (unschedulable, crash loop, exit code).
    reason: str = ""
    ip: str = ""
    surge: bool = False
    # When a container of the pod last exited (init containers included), if it ever did.
    last_exit_at: float | None = None

    @property
    def entry(self) -> bool:
        return self.pod_index == 0

    @property
    def failed(self) -> bool:
        """Terminated for good, or restarted in place and not ready again.

        A restart long before the pod last stopped being ready is history, not this failure: a
        readiness blip of a pod that once restarted is not a crash.
        """
        if self.deleting:
            return False
        if self.phase in ("Failed", "Succeeded"):
            return True
        if self.ready or self.restart_count == 0:
            return False
        return self.last_exit_at is None or self.last_exit_at >= self.ready_changed_at - RESTART_WINDOW


@dataclass(frozen=True)
class ServiceState:
    """A role instance's headless Service, which also carries the instance's failure history; or,
    with `subdomain` set (and no role index), a role's subdomain Service in a group."""

    name: str
    group_index: int
    role: str
    role_index: int
    failures: int = 0
    last_failure: float | None = None
    surge: bool = False
    revision: str = ""
    role_revision: str = ""
    subdomain: bool = False


@dataclass(frozen=True)
class GangState:
    name: str
    group_index: int
    phase: str = ""
    message: str = ""
    surge: bool = False
    revision: str = ""
    # The spec as the runtime holds it (servers may add defaults), for drift checks.
    spec: Mapping[str, Any] = field(default_factory=dict)


GANG_OBJECT_KINDS: frozenset[str] = frozenset({"volcano", "coscheduling"})


@dataclass(frozen=True)
class Observed:
    """Everything the runtime reports about one ModelServing's objects."""

    pods: tuple[PodState, ...] = ()
    services: tuple[ServiceState, ...] = ()
    gangs: tuple[GangState, ...] = ()
    # Revision hash -> the ModelServing spec it was made from (ControllerRevisions).
    revisions: Mapping[str, ModelServing] = field(default_factory=dict)
    # Entry pod name -> requests in flight (drain waits for 0); absent = unknown, see `requests_at`.
    in_flight: Mapping[str, int] = field(default_factory=dict)
    # Client Service present?
    client_service: bool = False
    # The gang objects the runtime can create (a cluster without Volcano's CRD serves no Volcano PodGroup).
    served_gangs: frozenset[str] = GANG_OBJECT_KINDS


def requests_at(pod: PodState, in_flight: Mapping[str, int]) -> int | None:
    """Requests in flight at an entry pod; None when nobody knows (never taken as 0).

    A pod that never had an address, or whose containers have all stopped, holds no request: it
    counts 0 without a reading, so a group whose entry never started is not kept for the bound.
    """
    if pod.name in in_flight:
        return max(in_flight[pod.name], 0)
    if not pod.ip or pod.phase in ("Failed", "Succeeded"):
        return 0
    return None


def _labels(obj: Object) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def _annotations(obj: Object) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def _condition(obj: Object, kind: str) -> Mapping[str, Any]:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return {}


def _not_ready_reason(status: Mapping[str, Any], scheduled: Mapping[str, Any]) -> str:
    if scheduled and scheduled.get("status") == "False":
        return str(scheduled.get("message") or scheduled.get("reason") or "Unschedulable")
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = container.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            waiting = state["waiting"]
            message = waiting.get("message")
            return f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
        if "terminated" in state:
            terminated = state["terminated"]
            return f"{terminated.get('reason', 'Terminated')} (exit code {terminated.get('exitCode', '?')})"
    return ""


def pod_state(obj: Object) -> PodState | None:
    """None for pods without Phalanx's labels (not ours)."""
    labels = _labels(obj)
    if L.GROUP_INDEX not in labels or L.ROLE not in labels:
        return None
    metadata = obj.get("metadata", {})
    status = obj.get("status") or {}
    annotations = _annotations(obj)
    created = parse_time(metadata.get("creationTimestamp")) or 0.0
    ready_condition = _condition(obj, "Ready")
    scheduled_condition = _condition(obj, "PodScheduled")
    ready = ready_condition.get("status") == "True"
    containers = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    restarts = sum(_int(c.get("restartCount")) for c in containers)
    exits = [
        parse_time(((c.get(key) or {}).get("terminated") or {}).get("finishedAt"))
        for c in containers
        for key in ("lastState", "state")
    ]
    known_exits = [t for t in exits if t is not None]
    return PodState(
        name=str(metadata.get("name", "")),
        group_index=_int(labels.get(L.GROUP_INDEX), -1),
        role=labels.get(L.ROLE, ""),
        role_index=_int(labels.get(L.ROLE_INDEX), -1),
        pod_index=_int(labels.get(L.POD_INDEX), -1),
        revision=labels.get(L.REVISION, ""),
        role_revision=labels.get(L.ROLE_REVISION, ""),
        phase=status.get("phase") or "Pending",
        scheduled=scheduled_condition.get("status") == "True" or bool(obj.get("spec", {}).get("nodeName")),
        ready=ready,
        restart_count=restarts,
        created_at=created,
        ready_changed_at=parse_time(ready_condition.get("lastTransitionTime")) or created,
        deleting=bool(metadata.get("deletionTimestamp")),
        deletion_cost=_int(annotations.get(L.POD_DELETION_COST_ANNOTATION)),
        draining_since=parse_time(annotations.get(DRAINING_ANNOTATION)),
        drain_reason=annotations.get(DRAIN_REASON_ANNOTATION, ""),
        reason="" if ready else _not_ready_reason(status, scheduled_condition),
        ip=str(status.get("podIP") or ""),
        surge=labels.get(L.SURGE) == "true",
        last_exit_at=max(known_exits) if known_exits else None,
    )


def service_state(obj: Object) -> ServiceState | None:
    labels = _labels(obj)
    if L.GROUP_INDEX not in labels or L.ROLE not in labels:
        return None  # the client Service
    annotations = _annotations(obj)
    return ServiceState(
        name=str(obj.get("metadata", {}).get("name", "")),
        group_index=_int(labels.get(L.GROUP_INDEX), -1),
        role=labels[L.ROLE],
        role_index=_int(labels.get(L.ROLE_INDEX), -1),
        subdomain=L.ROLE_INDEX not in labels,
        failures=_int(annotations.get(FAILURES_ANNOTATION)),
        last_failure=parse_time(annotations.get(LAST_FAILURE_ANNOTATION)),
        surge=labels.get(L.SURGE) == "true",
        revision=labels.get(L.REVISION, ""),
        role_revision=labels.get(L.ROLE_REVISION, ""),
    )


def gang_state(obj: Object) -> GangState | None:
    labels = _labels(obj)
    if L.GROUP_INDEX not in labels:
        return None
    status = obj.get("status") or {}
    message = ""
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") == "Unschedulable":
            message = str(condition.get("message") or condition.get("reason") or "")
    return GangState(
        name=str(obj.get("metadata", {}).get("name", "")),
        group_index=_int(labels.get(L.GROUP_INDEX), -1),
        phase=str(status.get("phase") or ""),
        message=message,
        surge=labels.get(L.SURGE) == "true",
        revision=labels.get(L.REVISION, ""),
        spec=dict(obj.get("spec") or {}),
    )


def observe(
    pods: list[Object],
    services: list[Object],
    gangs: list[Object],
    revisions: Mapping[str, ModelServing],
    in_flight: Mapping[str, int] | None = None,
    served_gangs: frozenset[str] = GANG_OBJECT_KINDS,
) -> Observed:
    """Reads a runtime's objects (already filtered to one ModelServing) into an Observed value."""
    pod_states = tuple(p for p in (pod_state(o) for o in pods) if p is not None)
    service_states = tuple(s for s in (service_state(o) for o in services) if s is not None)
    gang_states = tuple(g for g in (gang_state(o) for o in gangs) if g is not None)
    has_client = any(service_state(o) is None for o in services)
    return Observed(
        pods=pod_states,
        services=service_states,
        gangs=gang_states,
        revisions=dict(revisions),
        in_flight=dict(in_flight or {}),
        client_service=has_client,
        served_gangs=served_gangs,
    )
