"""Kubernetes discovery: the router's endpoints from entry pods and ModelServings, kept current by watches.

A thin adapter around `pods.serving_endpoints`: one informer (`phalanx.kube.informer`) per resource
and namespace. While a watch fails and is listed again, the last known endpoints stay in place.
Every change recomputes the endpoint set and hands it to the router when it differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod

from phalanx.api import labels as L
from phalanx.kube.errors import Backoff
from phalanx.kube.informer import Informer
from phalanx.kube.resources import ModelServingResource
from phalanx.router.declared import Declared, declared_by_servings
from phalanx.router.endpoints import Endpoint
from phalanx.router.pods import serving_endpoints

log = logging.getLogger("phalanx.router.kubernetes")

ENTRY_SELECTOR: dict[str, Any] = {L.ENTRY: "true"}

Object = dict[str, Any]
OnEndpoints = Callable[[list[Endpoint]], None]
OnDeclared = Callable[[Declared], None]


class KubernetesDiscovery:
    """Entry pods and ModelServings in the given namespaces (none: all) -> `on_endpoints(list)`,
    and the models the ModelServings declare -> `on_declared(Declared)`.

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
        on_declared: OnDeclared | None = None,
    ) -> None:
        self.on_endpoints = on_endpoints
        self.on_declared = on_declared
        scopes: list[str | None] = list(dict.fromkeys(namespaces)) or [None]
        options: dict[str, Any] = {
            # no jitter: one router's few watches do not flood the API server
            "backoff": Backoff(*backoff, jitter=0.0),
            "server_timeout_s": server_timeout_s,
            "logger": log,
        }
        self.pods = [
            Informer(client, Pod, ns, self._changed, labels=ENTRY_SELECTOR, **options) for ns in scopes
        ]
        self.servings = [
            Informer(client, ModelServingResource, ns, self._changed, **options) for ns in scopes
        ]
        self.published: list[Endpoint] | None = None
        self.declared: Declared | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def endpoints(self) -> list[Endpoint]:
        return serving_endpoints(_values(self.pods), _values(self.servings))

    def _changed(self, _objects: list[Object]) -> None:
        if not all(m.synced for m in [*self.pods, *self.servings]):
            return
        self._declare()
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

    def _declare(self) -> None:
        if self.on_declared is None:
            return
        try:
            declared = declared_by_servings(_values(self.servings))
            if declared != self.declared:
                self.on_declared(declared)
        except Exception:  # a malformed object must not stop discovery
            log.exception("could not publish the declared models; keeping the last set")
            return
        if declared != self.declared:
            log.info("declared models: %s", ", ".join(sorted(declared.models)) or "none")
        self.declared = declared

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


def _values(informers: Iterable[Informer]) -> list[Object]:
    return [obj for informer in informers for obj in informer.objects.values()]
