"""The web view's model (`GET /ui/state`): pure functions from plain data to a bounded JSON document.

The input is a snapshot shaped like `phalanx status`'s payload (`servings`, `pods`, `policies`,
`events`: from the embedded runtime under `phalanx up`, from the discovery's watches on Kubernetes)
and the router's own view of each endpoint. The output is what the page draws: every ModelServing
with its groups, roles and pods, each entry pod's load as the router sees it, each autoscaling
policy's counts and reason, and a timeline of rollout, recovery and scaling events.
Every list and string is capped, so a large fleet or a long message cannot grow the page unbounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.api import labels as L
from phalanx.controller.observed import pod_state

Object = Mapping[str, Any]

MAX_TEXT = 300
MAX_SERVINGS = 50
MAX_GROUPS = 100  # per ModelServing
MAX_PODS = 2000  # over all ModelServings
MAX_POLICIES = 50
MAX_EVENTS = 100

# Event reasons by the timeline lane the page shows them in; other reasons are "other".
_LANES = {
    "rollout": ("Rollout", "Updat", "Surge", "Revision", "Drain"),
    "recovery": ("Recover", "Restart", "BackOff", "Backoff", "Fail", "Crash", "Unhealthy", "Kill"),
    "scaling": ("Scal", "Autoscal", "Desired", "Zero"),
}


@dataclass(frozen=True)
class EndpointLoad:
    """What the router knows of one endpoint: `name` is `namespace/pod`."""

    name: str
    routable: bool
    in_flight: int
    healthy: bool = True
    waiting: float | None = None
    running: float | None = None
    kv_cache_usage: float | None = None


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """A string for the page, cut to `limit` characters (the page escapes it; this bounds it)."""
    shown = "" if value is None else str(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _mapping(obj: Any, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _list(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, list) else []


def lane(reason: str) -> str:
    """The timeline lane of an event reason: rollout, recovery, scaling or other."""
    for name, prefixes in _LANES.items():
        if any(reason.startswith(p) or p in reason for p in prefixes):
            return name
    return "other"


def pod_record(obj: Object) -> dict[str, Any] | None:
    """A pod object -> the status payload's pod record (None for pods without our labels)."""
    state = pod_state(dict(obj))
    if state is None:
        return None
    metadata = _mapping(obj, "metadata")
    return {
        "name": state.name,
        "namespace": metadata.get("namespace") or "default",
        "serving": _mapping(metadata, "labels").get(L.NAME, ""),
        "role": state.role,
        "group": state.group_index,
        "roleIndex": state.role_index,
        "entry": state.entry,
        "phase": state.phase,
        "ready": state.ready,
        "restarts": state.restart_count,
        "ip": state.ip,
        "reason": state.reason,
        "draining": state.draining_since is not None,
        "terminating": state.deleting,
    }


def pod_records(pods: Iterable[Object]) -> list[dict[str, Any]]:
    """Kubernetes pod objects -> the status payload's pod records (pods without our labels dropped)."""
    return [record for obj in pods if (record := pod_record(obj)) is not None]


def _load(load: EndpointLoad | None) -> dict[str, Any] | None:
    if load is None:
        return None
    return {
        "routable": load.routable,
        "healthy": load.healthy,
        "inFlight": load.in_flight,
        "waiting": load.waiting,
        "running": load.running,
        "kvCacheUsage": load.kv_cache_usage,
    }


def _pod(pod: Object, loads: Mapping[str, EndpointLoad]) -> dict[str, Any]:
    namespace = pod.get("namespace") or "default"
    return {
        "name": text(pod.get("name")),
        "roleIndex": _int(pod.get("roleIndex")),
        "entry": bool(pod.get("entry")),
        "phase": text(pod.get("phase"), 40),
        "ready": bool(pod.get("ready")),
        "restarts": _int(pod.get("restarts")),
        "reason": text(pod.get("reason")),
        "draining": bool(pod.get("draining")),
        "terminating": bool(pod.get("terminating")),
        "endpoint": _load(loads.get(f"{namespace}/{pod.get('name')}")),
    }


def _group(
    index: int, status: Object, pods: list[Object], role_names: list[str], loads: Mapping[str, EndpointLoad]
) -> dict[str, Any]:
    names = list(role_names) + sorted({str(p.get("role", "")) for p in pods} - set(role_names))
    roles: list[dict[str, Any]] = []
    for role in names:
        mine = sorted(
            (p for p in pods if p.get("role") == role),
            key=lambda p: (_int(p.get("roleIndex")), str(p.get("name"))),
        )
        roles.append({"name": text(role), "pods": [_pod(p, loads) for p in mine]})
    return {
        "index": index,
        "name": text(status.get("name") or f"group {index}"),
        "phase": text(status.get("phase") or "Unknown", 40),
        "revision": text(status.get("revision"), 80),
        "surge": bool(status.get("surge")),
        "failures": _int(status.get("failures")),
        "message": text(status.get("message")),
        "serving": any(p["endpoint"] and p["endpoint"]["routable"] for r in roles for p in r["pods"]),
        "roles": roles,
    }


def _serving(ms: Object, pods: list[Object], loads: Mapping[str, EndpointLoad], budget: list[int]) -> Object:
    meta, spec, status = _mapping(ms, "metadata"), _mapping(ms, "spec"), _mapping(ms, "status")
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    mine = [p for p in pods if p.get("serving") == name and (p.get("namespace") or "default") == namespace]
    if len(mine) > budget[0]:  # budget: [pods left to show, pods left out]
        budget[1] += len(mine) - budget[0]
        mine = mine[: budget[0]]
    budget[0] -= len(mine)
    role_names = [str(r.get("name", "")) for r in _list(_mapping(spec, "template"), "roles")]
    statuses = {_int(g.get("index")): g for g in _list(status, "groups") if isinstance(g, Mapping)}
    indexes = sorted(set(statuses) | {_int(p.get("group")) for p in mine})
    groups = [
        _group(i, statuses.get(i, {}), [p for p in mine if _int(p.get("group")) == i], role_names, loads)
        for i in indexes[:MAX_GROUPS]
    ]
    conditions = [
        text(c.get("type"), 60)
        for c in _list(status, "conditions")
        if isinstance(c, Mapping) and c.get("status") == "True"
    ]
    return {
        "name": text(name),
        "namespace": text(namespace),
        "desired": _int(spec.get("replicas")),
        "current": _int(status.get("replicas")),
        "updated": _int(status.get("updatedReplicas")),
        "serving": sum(1 for g in groups if g["serving"]),
        "revision": text(status.get("updateRevision"), 80),
        "conditions": conditions[:10],
        "groups": groups,
        "groupsLeftOut": max(0, len(indexes) - MAX_GROUPS),
    }


def _policy_rows(policy: Object) -> list[dict[str, Any]]:
    spec, status = _mapping(policy, "spec"), _mapping(policy, "status")
    name = text(_mapping(policy, "metadata").get("name"))
    target = _mapping(_mapping(_mapping(spec, "homogeneousTarget"), "target"), "targetRef")
    target = target or _mapping(_mapping(spec, "disaggregatedTarget"), "targetRef")
    scalings: list[tuple[str, Object]] = []
    if _mapping(status, "homogeneousStatus"):
        scalings.append(("", _mapping(status, "homogeneousStatus")))
    for role in _list(_mapping(status, "disaggregatedStatus"), "roles"):
        if isinstance(role, Mapping):
            scalings.append((str(role.get("name", "")), role))
    blocked = [
        c
        for c in _list(status, "conditions")
        if isinstance(c, Mapping)
        and (
            (c.get("type") == "ConflictingAutoscaler" and c.get("status") == "True")
            or (c.get("type") in ("Ready", "TargetFound") and c.get("status") == "False")
        )
    ]
    base = {"name": name, "target": text(target.get("name")), "observeOnly": bool(spec.get("observeOnly"))}
    if blocked or not scalings:
        why = blocked[0].get("message") if blocked else "no decision yet"
        return [{**base, "role": "", "desired": None, "current": None, "ready": None, "reason": text(why)}]
    return [
        {
            **base,
            "role": text(role),
            "desired": _int(s.get("desiredReplicas")),
            "current": _int(s.get("currentReplicas")),
            "ready": _int(s.get("readyReplicas")),
            "mode": text(s.get("mode"), 40),
            "reason": text(s.get("reason")),
        }
        for role, s in scalings
    ]


def _event(event: Object) -> dict[str, Any]:
    involved = _mapping(event, "involvedObject")
    reason = str(event.get("reason") or "")
    return {
        "time": text(event.get("time") or event.get("lastTimestamp") or event.get("eventTime"), 40),
        "type": text(event.get("type") or "Normal", 20),
        "lane": lane(reason),
        "object": text(f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}", 200),
        "reason": text(reason, 80),
        "message": text(event.get("message")),
    }


def build_view(snapshot: Object, loads: Iterable[EndpointLoad], *, source: str) -> dict[str, Any]:
    """The page's document. `source` says where the snapshot came from (`up`, `kubernetes`, `none`)."""
    by_name = {load.name: load for load in loads}
    pods = [p for p in _list(snapshot, "pods") if isinstance(p, Mapping)]
    servings = [s for s in _list(snapshot, "servings") if isinstance(s, Mapping)]
    budget = [MAX_PODS, 0]
    shown = [_serving(ms, pods, by_name, budget) for ms in servings[:MAX_SERVINGS]]
    known = {f"{p.get('namespace') or 'default'}/{p.get('name')}" for p in pods}
    policies = [row for p in _list(snapshot, "policies")[:MAX_POLICIES] for row in _policy_rows(p)]
    events = [e for e in _list(snapshot, "events") if isinstance(e, Mapping)][-MAX_EVENTS:]
    return {
        "source": source,
        "eventsReadable": bool(snapshot.get("eventsReadable", True)),
        # What the provider could not read, each with the grant it needs ("events (needs list on events)").
        "unreadable": [text(item, 120) for item in _list(snapshot, "unreadable")[:10]],
        "servings": shown,
        "servingsLeftOut": max(0, len(servings) - MAX_SERVINGS),
        "podsLeftOut": budget[1],
        # Endpoints the router routes to that no pod of the snapshot names (a static list, say).
        "otherEndpoints": [
            {"name": text(load.name), **(_load(load) or {})}
            for load in sorted(by_name.values(), key=lambda item: item.name)
            if load.name not in known
        ][:MAX_PODS],
        "policies": policies,
        "timeline": [_event(e) for e in events],
    }
