"""The status table `phalanx up` keeps on screen and `phalanx status` prints (pure: data in, rich out)."""

from __future__ import annotations

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


def _servings_table(servings: list[dict[str, Any]]) -> Table:
    table = Table(title="ModelServings", title_justify="left", expand=False)
    for column in ("name", "groups", "ready", "updated", "revision", "conditions"):
        table.add_column(column)
    for ms in servings:
        status = ms.get("status") or {}
        spec = ms.get("spec") or {}
        conditions = " ".join(
            f"{c['type']}={c['status']}" for c in status.get("conditions") or [] if c.get("status") == "True"
        )
        table.add_row(
            ms["metadata"]["name"],
            f"{status.get('replicas', 0)}/{spec.get('replicas', 0)}",
            str(status.get("availableReplicas", 0)),
            str(status.get("updatedReplicas", 0)),
            status.get("updateRevision", ""),
            conditions,
        )
    return table


def _groups_table(servings: list[dict[str, Any]]) -> Table:
    table = Table(title="ServingGroups", title_justify="left", expand=False)
    table.add_column("group", no_wrap=True)
    for column in ("phase", "pods ready", "revision", "failures", "message"):
        table.add_column(column)
    for ms in servings:
        for group in (ms.get("status") or {}).get("groups") or []:
            phase = group["phase"]
            name = group["name"] + (" (surge)" if group.get("surge") else "")
            table.add_row(
                name,
                Text(phase, style=_PHASE_STYLE.get(phase, "")),
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
    if servings:
        parts += [_servings_table(servings), _groups_table(servings), _pods_table(payload.get("pods") or [])]
    else:
        parts.append(Text("no ModelServing yet: phalanx apply -f FILE", style="dim"))
    recent = (payload.get("events") or [])[-events:]
    if recent:
        lines = Text()
        for event in recent:
            style = "red" if event.get("type") == "Warning" else "dim"
            clock = str(event.get("time", ""))[11:19]  # HH:MM:SS of the RFC 3339 time
            lines.append(f"{clock} {event.get('reason', '')}: {event.get('message', '')}\n", style)
        parts.append(lines)
    return Group(*parts)
