"""The web view's state on Kubernetes: what the discovery already watches, plus throttled lists.

Servings and entry pods come from the discovery's informers (no extra API load). Worker pods,
AutoscalingPolicies and Events are listed only while a page is open, at most once per
`lists_every_s` whatever the number of pages; of the events only the newest about our servings
are kept. Each list needs its own grant (`list` on pods, on `autoscalingpolicies`, on `events`);
without one the page says which cannot be read and shows the rest: a router is never broken by a
missing grant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.core.resource import NamespacedResource
from lightkube.resources.core_v1 import Event, Pod

from phalanx.api import labels as L
from phalanx.kube.errors import KUBE_ERRORS, status_of
from phalanx.kube.resources import AutoscalingPolicyResource, as_dict
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


@dataclass(frozen=True)
class Listed:
    """One optional list the view makes: what, how to ask, and the grant it needs (said on the page)."""

    name: str  # as the page names it: "events", "worker pods", "autoscalingpolicies"
    resource: type[NamespacedResource]
    labels: dict[str, Any] | None = None
    grant: str = ""


EVENTS = Listed("events", Event, grant="list on events")
WORKER_PODS = Listed("worker pods", Pod, {L.ENTRY: "false"}, grant="list on pods")
POLICIES = Listed("autoscalingpolicies", AutoscalingPolicyResource, grant="list on autoscalingpolicies")


def unreadable_after(status: int | None) -> bool | None:
    """What a failed list says about the grant: 403 unreadable (True); a 404 (the resource is not
    served: its CRD is not installed) readable and empty (False); anything else, nothing new (None)."""
    if status == 403:
        return True
    if status == 404:
        return False
    return None


class KubernetesState:
    """A `StateProvider` over the discovery's mirrors plus throttled lists of worker pods,
    AutoscalingPolicies and Events.

    The lists are made only while someone looks (a snapshot is asked for), at most once per
    `lists_every_s` whatever the number of pages open, one refresh at a time.
    """

    def __init__(
        self,
        client: AsyncClient,
        discovery: KubernetesDiscovery,
        namespaces: Sequence[str] = (),
        *,
        lists_every_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.discovery = discovery
        self.namespaces = list(dict.fromkeys(namespaces))
        self.lists_every_s = lists_every_s
        self.clock = clock
        self.found: dict[str, list[dict[str, Any]]] = {x.name: [] for x in (EVENTS, WORKER_PODS, POLICIES)}
        self.unreadable: dict[str, str] = {}  # name -> the grant it needs
        self._listed_at: float | None = None
        self._refreshing = asyncio.Lock()

    def provider(self) -> StateProvider:
        return StateProvider("kubernetes", self.snapshot)

    @property
    def events_readable(self) -> bool:
        return EVENTS.name not in self.unreadable

    async def snapshot(self) -> Snapshot:
        servings = [obj for m in self.discovery.servings for obj in m.objects.values()]
        entries = [obj for m in self.discovery.pods for obj in m.objects.values()]
        names = {str((s.get("metadata") or {}).get("name", "")) for s in servings}
        await self._refresh()
        return {
            "servings": servings,
            "pods": pod_records([*entries, *self.found[WORKER_PODS.name]]),
            "policies": self.found[POLICIES.name],
            "events": newest_events(self.found[EVENTS.name], names, MAX_EVENTS),
            "eventsReadable": self.events_readable,
            "unreadable": [f"{name} (needs {grant})" for name, grant in sorted(self.unreadable.items())],
        }

    async def _refresh(self) -> None:
        async with self._refreshing:
            now = self.clock()
            if self._listed_at is not None and now - self._listed_at < self.lists_every_s:
                return
            self._listed_at = now
            await asyncio.gather(*(self._list(x) for x in (EVENTS, WORKER_PODS, POLICIES)))

    async def _list(self, what: Listed) -> None:
        found: list[dict[str, Any]] = []
        try:
            for namespace in self.namespaces or ["*"]:
                async for obj in self.client.list(what.resource, namespace=namespace, labels=what.labels):
                    found.append(as_dict(obj))
        except KUBE_ERRORS as exc:
            verdict = unreadable_after(status_of(exc))
            if verdict is None:
                log.info("listing %s failed: %s; keeping the last list", what.name, exc)
                return
            if verdict and what.name not in self.unreadable:
                log.warning(
                    "cannot list %s (RBAC: %s): the web view shows them as unreadable", what.name, what.grant
                )
            if verdict:
                self.unreadable[what.name] = what.grant
            else:
                self.unreadable.pop(what.name, None)
            self.found[what.name] = []
            return
        self.unreadable.pop(what.name, None)
        self.found[what.name] = found
