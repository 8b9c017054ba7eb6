"""Kubernetes discovery: the router's endpoints from entry pods and ModelServings, kept current by watches.

A thin adapter around `pods.serving_endpoints`: one local mirror per resource and namespace, each
kept by list-then-watch. A relist replaces the mirror (so nothing deleted while no watch ran
lingers); a watch that fails (410 Gone, API server restart, connection lost, RBAC) is logged and
followed by a relist with backoff, and the last known endpoints stay in place meanwhile. Every
change recomputes the endpoint set and hands it to the router when it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from lightkube import AsyncClient
from lightkube.core.resource import NamespacedResource
from lightkube.resources.core_v1 import Pod

from phalanx.api import labels as L
from phalanx.kube.errors import Backoff, WatchEnded, retry
from phalanx.kube.resources import ModelServingResource, as_dict
from phalanx.router.endpoints import Endpoint
from phalanx.router.pods import serving_endpoints

log = logging.getLogger("phalanx.router.kubernetes")

ENTRY_SELECTOR: dict[str, Any] = {L.ENTRY: "true"}

Object = dict[str, Any]
OnEndpoints = Callable[[list[Endpoint]], None]


def _key(obj: Object) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


class Mirror:
    """The objects of one resource in one namespace (or all), kept by list-then-watch until cancelled."""

    def __init__(
        self,
        client: AsyncClient,
        resource: type[NamespacedResource],
        namespace: str | None,
        on_change: Callable[[], None],
        *,
        labels: dict[str, Any] | None = None,
        backoff: tuple[float, float] = (0.5, 10.0),
        server_timeout_s: int = 300,
        stable_s: float = 60.0,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace  # None: every namespace
        self.labels = labels
        self.on_change = on_change
        self.objects: dict[tuple[str, str], Object] = {}
        self.synced = False  # listed at least once
        self.backoff = backoff
        self.server_timeout_s = server_timeout_s
        self.stable_s = stable_s  # a list and watch that lasted this long resets the backoff

    @property
    def what(self) -> str:
        return f"{self.resource.__name__} in {self.namespace or 'all namespaces'}"

    async def run(self) -> None:
        # 410 Gone, timeouts, a restarting API server, RBAC: list again, never give up.
        await retry(
            self._list_and_watch,
            what=f"watching {self.what}",
            backoff=Backoff(*self.backoff, jitter=0.0),
            retry_on=lambda _: True,
            reset_after=self.stable_s,
            logger=log,
            then="listing again",
        )

    async def _list_and_watch(self) -> NoReturn:
        listing = self.client.list(self.resource, namespace=self.namespace or "*", labels=self.labels)
        fresh = {}
        async for obj in listing:
            data = as_dict(obj)
            fresh[_key(data)] = data
        self.objects = fresh
        self.synced = True
        self.on_change()
        # lightkube resumes a watch the server ends (timeoutSeconds) from the last version it saw.
        async for kind, obj in self.client.watch(
            self.resource,
            namespace=self.namespace or "*",
            labels=self.labels,
            resource_version=listing.resourceVersion,
            server_timeout=self.server_timeout_s,
        ):
            data = as_dict(obj)
            if kind == "DELETED":
                self.objects.pop(_key(data), None)
            elif kind in ("ADDED", "MODIFIED"):
                self.objects[_key(data)] = data
            else:
                continue
            self.on_change()
        raise WatchEnded("the watch ended")


class KubernetesDiscovery:
    """Entry pods and ModelServings in the given namespaces (none: all) -> `on_endpoints(list)`.

    Nothing is published until every mirror has listed once, so a partial view never replaces
    the router's endpoints; after that, every change that alters the endpoint set is published.
    """

    def __init__(
        self,
        client: AsyncClient,
        on_endpoints: OnEndpoints,
        namespaces: Sequence[str] = (),
        *,
        backoff: tuple[float, float] = (0.5, 10.0),
        server_timeout_s: int = 300,
    ) -> None:
        self.on_endpoints = on_endpoints
        scopes: list[str | None] = list(dict.fromkeys(namespaces)) or [None]
        options: dict[str, Any] = {"backoff": backoff, "server_timeout_s": server_timeout_s}
        self.pods = [
            Mirror(client, Pod, ns, self._changed, labels=ENTRY_SELECTOR, **options) for ns in scopes
        ]
        self.servings = [Mirror(client, ModelServingResource, ns, self._changed, **options) for ns in scopes]
        self.published: list[Endpoint] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def endpoints(self) -> list[Endpoint]:
        return serving_endpoints(_values(self.pods), _values(self.servings))

    def _changed(self) -> None:
        if not all(m.synced for m in [*self.pods, *self.servings]):
            return
        try:
            endpoints = self.endpoints()
            if endpoints == self.published:
                return
            self.on_endpoints(endpoints)
        except Exception:  # a malformed object must not stop discovery
            log.exception("could not publish the endpoints; keeping the last set")
            return
        self.published = endpoints
        log.info("endpoints: %d, %d routable", len(endpoints), sum(1 for ep in endpoints if ep.routable))

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("discovery already started")
        for mirror in [*self.pods, *self.servings]:
            self._tasks.append(asyncio.create_task(mirror.run(), name=f"watch {mirror.what}"))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _values(mirrors: Iterable[Mirror]) -> list[Object]:
    return [obj for mirror in mirrors for obj in mirror.objects.values()]
