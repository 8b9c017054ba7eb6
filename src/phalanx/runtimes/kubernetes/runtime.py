"""`Runtime` on a Kubernetes cluster, through lightkube's async client.

Writes go through the API server like any controller's: creates tolerate AlreadyExists, deletes
tolerate NotFound, spec-following objects use server-side apply with one field manager, the
ModelServing status is written through its status subresource. Watches feed `wait_for_change`
and an optional callback with the ModelServing each change belongs to, so an operator can queue it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.core.resource import NamespacedResource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Event as CoreEvent
from lightkube.types import PatchType
from pydantic import ValidationError

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing, ModelServingStatus
from phalanx.controller.actions import Event, Kind
from phalanx.controller.observed import format_time
from phalanx.kube.errors import (
    KUBE_ERRORS,
    Backoff,
    WatchEnded,
    describe,
    is_kube_error,
    is_not_found,
    retry,
    status_of,
)
from phalanx.kube.informer import Informer
from phalanx.kube.resources import (
    BY_KIND,
    GANG_OF_API,
    PODGROUP_CRDS,
    PODGROUPS,
    ModelServingResource,
    as_dict,
)
from phalanx.runtimes.base import NotFoundError

log = logging.getLogger("phalanx.runtimes.kubernetes")

Object = dict[str, Any]
OnChange = Callable[[str, str], None]  # (namespace, ModelServing name)
COMPONENT = "phalanx-operator"
_OWNED: dict[str, Any] = {L.NAME: None}  # label selector "serving.phalanx.dev/name exists"
WATCH_STABLE_S = 60.0  # a watch that lasted this long before failing starts the backoff over


class NotYet(Exception):
    """The API server does not agree yet with what a CRD's watch told us."""


def _always(_: BaseException) -> bool:
    return True  # a watch is never given up: it is cancelled


def _established(crd: Object) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


class KubernetesRuntime:
    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str | None = None,
        field_manager: str = L.FIELD_MANAGER,
        on_change: OnChange | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace  # None: every namespace
        self.field_manager = field_manager
        self.on_change = on_change
        self.gang_apis: set[str] = set()
        # Set when the served gang APIs change (a scheduler's CRDs installed or removed): every
        # ModelServing should be looked at again, since its groups gain or lose their PodGroups.
        self.gangs_changed = asyncio.Event()
        self._changed = asyncio.Event()
        self._watches: list[asyncio.Task[None]] = []
        self._gang_watches: dict[str, asyncio.Task[None]] = {}
        # One informer per kind (PodGroups: per served gang API): reconcile passes read these.
        self._informers: dict[str, Informer] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        # A server still warming up answers 429 or resets, RBAC may come later: try again.
        await retry(self.discover, what="API discovery", backoff=Backoff(0.2, 10.0), retry_on=is_kube_error)
        for kind, resource in [("ModelServing", ModelServingResource), *BY_KIND.items()]:
            informer = self._informers[kind] = self._informer(resource)
            self._watches.append(asyncio.create_task(informer.run(), name=f"watch {informer.what}"))
        self._follow_gang_apis()
        for crd in PODGROUP_CRDS:
            self._watches.append(asyncio.create_task(self._watch_gang_crd(crd), name=f"watch CRD {crd}"))

    async def discover(self) -> None:
        """Which gang APIs the cluster serves (their CRDs may be installed after we start)."""
        served = set()
        for api, resource in PODGROUPS.items():
            try:
                async for _ in self.client.list(resource, namespace=self.namespace or "*", chunk_size=1):
                    break
            except KUBE_ERRORS as exc:  # 404: the API group or its resource is not served
                if is_not_found(exc):
                    continue
                raise
            served.add(api)
        self.gang_apis = served

    def served_gangs(self) -> frozenset[str]:
        return frozenset(GANG_OF_API[api] for api in self.gang_apis)

    def _follow_gang_apis(self) -> None:
        """One PodGroup watch per served gang API, no more."""
        for api in sorted(self.gang_apis - self._gang_watches.keys()):
            informer = self._informers[api] = self._informer(PODGROUPS[api])
            self._gang_watches[api] = asyncio.create_task(informer.run(), name=f"watch PodGroups {api}")
        for api in sorted(self._gang_watches.keys() - self.gang_apis):
            self._gang_watches.pop(api).cancel()
            self._informers.pop(api, None)

    async def _watch_gang_crd(self, crd: str) -> None:
        """Follows one gang CRD (by name: RBAC can grant exactly these) and rediscovers on a change."""
        api = PODGROUP_CRDS[crd]

        async def changed(kind: str, obj: Object) -> None:
            established = kind != "DELETED" and _established(obj)
            if established != (api in self.gang_apis):
                await self._rediscover(api, established)

        await self._follow(
            lambda: self.client.watch(
                CustomResourceDefinition, fields={"metadata.name": crd}, server_timeout=300
            ),
            f"CRD {crd}",
            changed,
        )

    async def _rediscover(self, api: str, served: bool) -> None:
        before = set(self.gang_apis)

        async def agreed() -> None:
            await self.discover()
            if (api in self.gang_apis) != served:
                raise NotYet(f"{api} {'not ' if not served else ''}served yet")

        # A CRD just Established may still answer 404 or 429 for a moment: look again until it agrees.
        with contextlib.suppress(NotYet, *KUBE_ERRORS):
            await retry(
                agreed,
                what=f"rediscovering {api}",
                backoff=Backoff(0.5, 0.5, jitter=0.0),
                retry_on=lambda exc: isinstance(exc, NotYet) or is_kube_error(exc),
                attempts=60,
                level=lambda _: logging.DEBUG,  # the usual moment a new CRD takes to be served
            )
        if self.gang_apis != before:
            log.info("gang APIs served now: %s", ", ".join(sorted(self.gang_apis)) or "none")
            self._follow_gang_apis()
            self.gangs_changed.set()
            self._changed.set()

    async def close(self) -> None:
        tasks = [*self._watches, *self._gang_watches.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watches.clear()
        self._gang_watches.clear()
        self._informers.clear()

    def _informer(self, resource: type[NamespacedResource]) -> Informer:
        is_serving = resource is ModelServingResource

        def changed(objects: list[Object]) -> None:
            self._changed.set()  # a list after a failed watch may carry news even when nothing differs
            for obj in objects:
                self._notify(obj, is_serving)

        return Informer(
            self.client,
            resource,
            self.namespace,
            changed,
            labels=None if is_serving else _OWNED,
            index_label=None if is_serving else L.NAME,
            logger=log,
        )

    def _cache(self, key: str, namespace: str, selector: Mapping[str, str]) -> Informer | None:
        """The informer that can answer this read, once it has listed: ours are by `L.NAME`."""
        informer = self._informers.get(key)
        in_scope = self.namespace in (None, namespace) and L.NAME in selector
        return informer if informer is not None and informer.synced and in_scope else None

    def remember(self, written: Any) -> None:
        """What a write answered goes into the cache at once, so the next pass reads its own writes."""
        if written is None:
            return
        obj = as_dict(written)
        kind = obj.get("kind")
        informer = self._informers.get(str(obj.get("apiVersion") if kind == "PodGroup" else kind))
        if informer is not None and informer.synced:
            informer.store.put(obj)

    async def _follow(
        self,
        open_watch: Callable[[], AsyncIterable[tuple[str, Any]]],
        what: str,
        on_event: Callable[[str, Object], Awaitable[None]],
    ) -> None:
        """The one retry loop of every watch: errors (expired, forbidden, connection lost) are logged
        and the watch opened again with backoff, until cancelled."""

        async def session() -> None:
            try:
                async for kind, obj in open_watch():
                    await on_event(kind, as_dict(obj))
            finally:
                self._changed.set()  # something may have been missed while no watch ran
            raise WatchEnded("the watch ended")

        await retry(session, what=f"watching {what}", retry_on=_always, reset_after=WATCH_STABLE_S)

    def _notify(self, obj: Object, is_serving: bool) -> None:
        self._changed.set()
        if self.on_change is None:
            return
        metadata = obj.get("metadata") or {}
        name = metadata.get("name") if is_serving else (metadata.get("labels") or {}).get(L.NAME)
        if name:
            self.on_change(metadata.get("namespace") or "default", name)

    # -- the Runtime protocol -----------------------------------------------------------------

    async def list_objects(self, kind: Kind, namespace: str, selector: Mapping[str, str]) -> list[Object]:
        """From the informers once they have listed (names are deterministic and creates tolerate 409,
        so a read a moment old is safe), else from the API server."""
        if kind == "PodGroup":
            found: list[Object] = []
            for api in sorted(self.gang_apis):
                found += await self._read(api, PODGROUPS[api], namespace, selector)
            return found
        return await self._read(kind, BY_KIND[kind], namespace, selector)

    async def _read(
        self, key: str, resource: type[NamespacedResource], namespace: str, selector: Mapping[str, str]
    ) -> list[Object]:
        cache = self._cache(key, namespace, selector)
        if cache is not None:
            return cache.select(namespace, selector)
        labels: dict[str, Any] = dict(selector)
        return [as_dict(o) async for o in self.client.list(resource, namespace=namespace, labels=labels)]

    async def create(self, obj: Object) -> None:
        try:
            created = await self.client.create(from_dict(obj), field_manager=self.field_manager)
        except KUBE_ERRORS as exc:
            if status_of(exc) != 409:
                raise
        else:
            self.remember(created)

    async def apply(self, obj: Object) -> None:
        self.remember(await self.client.apply(from_dict(obj), field_manager=self.field_manager, force=True))

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        resources = (
            [PODGROUPS[api] for api in sorted(self.gang_apis)] if kind == "PodGroup" else [BY_KIND[kind]]
        )
        for resource in resources:
            try:
                await self.client.delete(resource, name, namespace=namespace)
            except KUBE_ERRORS as exc:
                if not is_not_found(exc):
                    raise

    async def annotate(
        self, kind: Kind, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        patch = {"metadata": {"annotations": dict(annotations)}}  # merge patch: None removes a key
        resources = (
            [PODGROUPS[api] for api in sorted(self.gang_apis)] if kind == "PodGroup" else [BY_KIND[kind]]
        )
        for resource in resources:
            try:
                patched = await self.client.patch(
                    resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE
                )
            except KUBE_ERRORS as exc:
                if not is_not_found(exc):
                    raise
            else:
                self.remember(patched)

    async def record_event(self, namespace: str, serving: str, event: Event) -> None:
        now = format_time(time.time())
        involved = ObjectReference(
            apiVersion=L.GROUP_VERSION if event.object_kind in ("ModelServing", "ModelDeployment") else "v1",
            kind=event.object_kind,
            name=event.object_name or serving,
            namespace=namespace,
        )
        record = CoreEvent(
            metadata=ObjectMeta(generateName=f"{event.object_name or serving}.", namespace=namespace),
            involvedObject=involved,
            reason=event.reason,
            message=event.message[:1024],
            type=event.type,
            source=EventSource(component=COMPONENT),
            reportingComponent=COMPONENT,
            firstTimestamp=now,  # type: ignore[arg-type]
            lastTimestamp=now,  # type: ignore[arg-type]
            count=1,
        )
        try:
            await self.client.create(record)
        except KUBE_ERRORS as exc:  # events are best effort: never block a reconcile on them
            log.debug("event not recorded: %s", describe(exc))

    def serving_keys(self) -> list[tuple[str, str]] | None:
        """(namespace, name) of every ModelServing in the cache; None until it has listed."""
        informer = self._informers.get("ModelServing")
        return None if informer is None or not informer.synced else sorted(informer.objects)

    async def read_serving(self, namespace: str, name: str) -> Object | None:
        """One ModelServing (None: it does not exist), from the cache once it has listed. A read a moment
        old is safe: passes of one ModelServing run one at a time, the cache never goes back and holds
        our own writes at once, and every change to the object queues another pass."""
        informer = self._informers.get("ModelServing")
        if informer is not None and informer.synced and self.namespace in (None, namespace):
            found = informer.objects.get((namespace, name))
            return None if found is None else copy.deepcopy(found)
        try:
            return as_dict(await self.client.get(ModelServingResource, name, namespace=namespace))
        except KUBE_ERRORS as exc:
            if is_not_found(exc):
                return None
            raise

    async def list_servings(self) -> list[ModelServing]:
        """The ModelServings whose spec can be read; the operator reports the others in their status."""
        informer = self._informers.get("ModelServing")
        if informer is not None and informer.synced:
            objects = [copy.deepcopy(o) for _, o in sorted(informer.objects.items())]
        else:
            listing = self.client.list(ModelServingResource, namespace=self.namespace or "*")
            objects = [as_dict(o) async for o in listing]
        servings = []
        for obj in objects:
            with contextlib.suppress(ValidationError):
                servings.append(ModelServing.model_validate(obj))
        return servings

    async def write_status(self, namespace: str, name: str, status: ModelServingStatus) -> None:
        body = {"status": status.model_dump(by_alias=True, exclude_none=True, mode="json")}
        try:
            written = await self.client.patch(
                ModelServingResource.Status, name, body, namespace=namespace, patch_type=PatchType.MERGE
            )
        except KUBE_ERRORS as exc:
            if is_not_found(exc):
                raise NotFoundError(f"{namespace}/{name}") from None
            raise
        self.remember(written)  # the next pass compares against this status, not an older one

    async def wait_for_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()
