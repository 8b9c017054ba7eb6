"""The web view's state on Kubernetes: what the discovery already watches, plus Events when readable.

Servings and entry pods come from the discovery's informers (no extra API load). Events are listed
at most once per `events_every_s` whatever the number of browsers polling, and only the newest are
kept. Without permission to list events (RBAC: `list` on `events` in the core group), the page says
so and shows the rest; a router is never broken by a missing grant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event

from phalanx.kube.errors import KUBE_ERRORS, status_of
from phalanx.router.kubernetes import KubernetesDiscovery
from phalanx.router.webui import Snapshot, StateProvider
from phalanx.router.webview import MAX_EVENTS, pod_records

log = logging.getLogger("phalanx.router.kubeview")

_OUR_KINDS = frozenset({"ModelServing", "Pod", "AutoscalingPolicy", "ModelDeployment"})


def event_record(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A core/v1 Event as the status payload's event records are shaped."""
    involved = obj.get("involvedObject") or {}
    when = (
        obj.get("lastTimestamp")
        or obj.get("eventTime")
        or (obj.get("metadata") or {}).get("creationTimestamp")
    )
    return {
        "time": str(when or ""),
        "type": obj.get("type") or "Normal",
        "reason": obj.get("reason") or "",
        "message": obj.get("message") or "",
        "namespace": involved.get("namespace") or "",
        "involvedObject": {"kind": involved.get("kind") or "", "name": involved.get("name") or ""},
    }


def newest_events(
    events: Iterable[Mapping[str, Any]], servings: set[str], limit: int
) -> list[dict[str, Any]]:
    """Events about our kinds whose object belongs to one of `servings` (by name prefix), oldest first."""
    records = []
    for event in events:
        record = event_record(event)
        involved = record["involvedObject"]
        if involved["kind"] not in _OUR_KINDS:
            continue
        if not any(involved["name"] == s or involved["name"].startswith(s + "-") for s in servings):
            continue
        records.append(record)
    records.sort(key=lambda r: r["time"])
    return records[-limit:]


class KubernetesState:
    """A `StateProvider` over the discovery's mirrors and a throttled Event list."""

    def __init__(
        self,
        client: AsyncClient,
        discovery: KubernetesDiscovery,
        namespaces: Sequence[str] = (),
        *,
        events_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.discovery = discovery
        self.namespaces = list(dict.fromkeys(namespaces))
        self.events_every_s = events_every_s
        self.clock = clock
        self._events: list[dict[str, Any]] = []
        self._listed_at: float | None = None
        self.events_readable = True

    def provider(self) -> StateProvider:
        return StateProvider("kubernetes", self.snapshot)

    async def snapshot(self) -> Snapshot:
        servings = [obj for m in self.discovery.servings for obj in m.objects.values()]
        pods = [obj for m in self.discovery.pods for obj in m.objects.values()]
        names = {str((s.get("metadata") or {}).get("name", "")) for s in servings}
        await self._refresh_events(names)
        return {
            "servings": servings,
            "pods": pod_records(pods),
            "policies": [],
            "events": self._events,
            "eventsReadable": self.events_readable,
        }

    async def _refresh_events(self, servings: set[str]) -> None:
        now = self.clock()
        if self._listed_at is not None and now - self._listed_at < self.events_every_s:
            return
        self._listed_at = now
        found: list[Mapping[str, Any]] = []
        try:
            for namespace in self.namespaces or ["*"]:
                async for event in self.client.list(Event, namespace=namespace):
                    found.append(event.to_dict())
        except KUBE_ERRORS as exc:
            if status_of(exc) == 403:
                if self.events_readable:
                    log.warning("cannot list events (RBAC): the web view shows no timeline")
                self.events_readable = False
            else:
                log.info("listing events failed: %s; keeping the last list", exc)
            return
        self.events_readable = True
        self._events = newest_events(found, servings, MAX_EVENTS)
