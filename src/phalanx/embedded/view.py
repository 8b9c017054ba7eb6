"""The status table `phalanx up` keeps on screen and `phalanx status` prints (pure: data in, rich out).

Besides the controller's status, the view shows what is serving: a group serves while one of its
entry pods is an endpoint of the router (ready, running, not draining, not terminating), even when
the controller calls it `Starting` because a role is scaling up or a role instance is recovering.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

_PHASE_STYLE = {
    "Ready": "green",
    "Starting": "yellow",
    "Pending": "yellow",
    "Recovering": "red",
    "BackingOff": "red",
    "Draining": "cyan",
    "Deleting": "dim",
}


@dataclass(frozen=True)
class RoleCount:
    """Role instances of one role whose every pod is ready, against how many the spec asks for."""

    role: str
    ready: int
    desired: int


@dataclass(frozen=True)
class Capacity:
    """What one ModelServing can serve now."""

    desired_groups: int
    serving_groups: frozenset[int]  # indexes of groups with an entry pod the router uses
    roles: tuple[RoleCount, ...]  # over all groups
    group_roles: dict[int, tuple[RoleCount, ...]] = field(default_factory=dict)


def _routable(pod: dict[str, Any]) -> bool:
    """The router's rule for an endpoint, on the status payload's pod records."""
    return bool(
        pod.get("entry")
        and pod.get("ready")
        and pod.get("phase") == "Running"
        and not pod.get("draining")
        and not pod.get("terminating")
    )


def capacity(ms: dict[str, Any], pods: list[dict[str, Any]]) -> Capacity:
    """Groups serving and role instances ready for one ModelServing of the status payload."""
    meta, spec = ms.get("metadata") or {}, ms.get("spec") or {}
    name, namespace = meta.get("name"), meta.get("namespace", "default")
    roles = (spec.get("template") or {}).get("roles") or []
    mine = [p for p in pods if p.get("serving") == name and p.get("namespace", "default") == namespace]
    instances: dict[tuple[int, str, int], list[dict[str, Any]]] = defaultdict(list)
    for pod in mine:
        instances[(pod.get("group", 0), pod.get("role", ""), pod.get("roleIndex", 0))].append(pod)
    ready: dict[tuple[int, str], int] = defaultdict(int)
    for (group, role_name, _), members in instances.items():
        role = next((r for r in roles if r.get("name") == role_name), None)
        if role is None:
            continue  # a role removed from the spec: its instances are going away
        size = 1 + int(role.get("workerReplicas", 0))
        live = [p for p in members if not p.get("terminating") and not p.get("draining")]
        if len(live) == size and all(p.get("ready") for p in live):
            ready[(group, role_name)] += 1
    groups = sorted({p.get("group", 0) for p in mine})
    desired_groups = int(spec.get("replicas", 0))
    per_group = {
        g: tuple(RoleCount(r["name"], ready[(g, r["name"])], int(r.get("replicas", 1))) for r in roles)
        for g in groups
    }
    totals = tuple(
        RoleCount(
            r["name"],
            sum(ready[(g, r["name"])] for g in groups),
            int(r.get("replicas", 1)) * desired_groups,
        )
        for r in roles
    )
    serving = frozenset(p.get("group", 0) for p in mine if _routable(p))
    return Capacity(desired_groups, serving, totals, per_group)


def _counts(counts: tuple[RoleCount, ...]) -> str:
    return ", ".join(f"{c.role} {c.ready}/{c.desired}" for c in counts)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        table.add_column(column)
    return table


def _servings_table(servings: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Table:
    columns = ("name", "groups", "serving", "instances ready", "updated", "revision", "conditions")
    table = _table("ModelServings", *columns)
    for ms in servings:
        status = ms.get("status") or {}
        spec = ms.get("spec") or {}
        now = capacity(ms, pods)
        conditions = " ".join(
            f"{c['type']}={c['status']}" for c in status.get("conditions") or [] if c.get("status") == "True"
        )
        serving = len(now.serving_groups)
        table.add_row(
            ms["metadata"]["name"],
            f"{status.get('replicas', 0)}/{spec.get('replicas', 0)}",
            Text(
                f"{serving}/{now.desired_groups}",
                style="green" if serving >= now.desired_groups else ("yellow" if serving else "red"),
            ),
            _counts(now.roles),
            str(status.get("updatedReplicas", 0)),
            status.get("updateRevision", ""),
            conditions,
        )
    return table


def _serving_cell(group: dict[str, Any], now: Capacity) -> Text:
    index = group.get("index", -1)
    counts = _counts(now.group_roles.get(index, ()))
    if index in now.serving_groups:
        whole = group.get("phase") == "Ready"
        # A group may serve while a role scales up or an instance recovers: say so, it is no outage.
        return Text(f"yes ({counts})" if counts else "yes", style="green" if whole else "yellow")
    return Text(f"no ({counts})" if counts else "no", style="dim")


def _groups_table(servings: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Table:
    table = Table(title="ServingGroups", title_justify="left", expand=False)
    table.add_column("group", no_wrap=True)
    for column in ("phase", "serving", "pods ready", "revision", "failures", "message"):
        table.add_column(column)
    for ms in servings:
        now = capacity(ms, pods)
        for group in (ms.get("status") or {}).get("groups") or []:
            phase = group["phase"]
            name = group["name"] + (" (surge)" if group.get("surge") else "")
            table.add_row(
                name,
                Text(phase, style=_PHASE_STYLE.get(phase, "")),
                _serving_cell(group, now),
                f"{group.get('readyPods', 0)}/{group.get('pods', 0)}",
                group.get("revision", ""),
                str(group.get("failures", 0) or ""),
                group.get("message", ""),
            )
    return table


def _pods_table(pods: list[dict[str, Any]]) -> Table:
    table = Table(title="Pods", title_justify="left", expand=False)
    table.add_column("pod", no_wrap=True)
    for column in ("role", "phase", "ready", "restarts", "address", "GPUs", "reason"):
        table.add_column(column)
    for pod in pods:
        ready = Text("yes", style="green") if pod["ready"] else Text("no", style="yellow")
        phase = pod["phase"] + (" (draining)" if pod.get("draining") else "")
        phase += " (terminating)" if pod.get("terminating") else ""
        table.add_row(
            pod["name"],
            pod.get("role", ""),
            phase,
            ready,
            str(pod.get("restarts", 0)),
            pod.get("ip", ""),
            pod.get("gpus", ""),
            pod.get("reason", ""),
        )
    return table


def describe_event(event: dict[str, Any]) -> str:
    """`pod/NAME Reason: message`: the object first, as `kubectl get events` shows it."""
    involved = event.get("involvedObject") or {}
    kind, name = str(involved.get("kind", "")), str(involved.get("name", ""))
    subject = f"{kind.lower()}/{name} " if kind and name else ""
    return f"{subject}{event.get('reason', '')}: {event.get('message', '')}"


def _policies_table(policies: list[dict[str, Any]]) -> Table:
    """Each AutoscalingPolicy: its target's counts, mode and the last decision's reason; a policy
    that does not act (refused, target missing, not supported) shows why instead."""
    table = _table("AutoscalingPolicies", "name", "target", "desired", "current", "ready", "mode", "reason")
    for policy in policies:
        spec = policy.get("spec") or {}
        status = policy.get("status") or {}
        target = ((spec.get("homogeneousTarget") or {}).get("target") or {}).get("targetRef") or {}
        target = target or (spec.get("disaggregatedTarget") or {}).get("targetRef") or {}
        name = policy["metadata"]["name"]
        scalings = [("", status["homogeneousStatus"])] if status.get("homogeneousStatus") else []
        scalings += [
            (f" ({r.get('name', '')})", r)
            for r in (status.get("disaggregatedStatus") or {}).get("roles") or []
        ]
        blocked = [c for c in status.get("conditions") or [] if _blocks(c)]
        if blocked or not scalings:
            why = blocked[0].get("message", "") if blocked else "no decision yet"
            table.add_row(name, target.get("name", ""), "-", "-", "-", "-", Text(why, "yellow"))
            continue
        observe = " (observe only)" if spec.get("observeOnly") else ""
        for role, scaling in scalings:
            table.add_row(
                name + role,
                target.get("name", ""),
                str(scaling.get("desiredReplicas", 0)),
                str(scaling.get("currentReplicas", 0)),
                str(scaling.get("readyReplicas", 0)),
                str(scaling.get("mode") or "") + observe,
                scaling.get("reason", ""),
            )
    return table


def _blocks(condition: dict[str, Any]) -> bool:
    """A condition that says the policy does not act."""
    kind, state = condition.get("type"), condition.get("status")
    return (kind == "ConflictingAutoscaler" and state == "True") or (
        kind in ("Ready", "TargetFound") and state == "False"
    )


def render_status(payload: dict[str, Any], *, events: int = 8) -> RenderableType:
    router = payload.get("router") or {}
    gpus = payload.get("gpus") or {}
    in_flight = sum((router.get("inFlight") or {}).values())
    header = Text.assemble(
        ("phalanx up", "bold"),
        f"  router {router.get('url', '-')}  in flight {in_flight}",
        f"  GPUs {gpus.get('free', 0)}/{gpus.get('total', 0)} free",
    )
    parts: list[RenderableType] = [header]
    servings = payload.get("servings") or []
    pods = payload.get("pods") or []
    if servings:
        parts += [_servings_table(servings, pods), _groups_table(servings, pods), _pods_table(pods)]
    else:
        parts.append(Text("no ModelServing yet: phalanx apply -f FILE", style="dim"))
    policies = payload.get("policies") or []
    if policies:
        parts.append(_policies_table(policies))
    recent = (payload.get("events") or [])[-events:]
    if recent:
        lines = Text()
        for event in recent:
            style = "red" if event.get("type") == "Warning" else "dim"
            clock = str(event.get("time", ""))[11:19]  # HH:MM:SS of the RFC 3339 time
            lines.append(f"{clock} {describe_event(event)}\n", style)
        parts.append(lines)
    return Group(*parts)
