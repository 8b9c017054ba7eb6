"""Informers: one list-then-watch per resource and namespace, its objects kept in memory and indexed.

An informer lists, then watches from the list's resourceVersion; a watch that fails (410 Gone, a
restarting API server, a lost connection, RBAC) is followed by a fresh list through the error
boundary's `retry`, and the objects last known stay readable meanwhile. A list replaces the store,
so nothing deleted while no watch ran lingers. `select` reads by namespace and label equality,
through the index of one label when the selector names it.

Readers get the stored objects themselves, not copies (copying 4000 pods a pass cost more than
the rest of a pass), and must not change them: the store only ever replaces an object, never edits
one, so what a reader holds stays as it was read. Objects are kept without `managedFields`, a
large part of every object, except the entries that own `spec.replicas`, cut to who wrote them
and how: whether an autoscaler owns a ModelServing's count is read from them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from lightkube import AsyncClient
from lightkube.core.resource import NamespacedResource

from phalanx.kube.errors import Backoff, WatchEnded, retry, status_of
from phalanx.kube.resources import as_dict

Object = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
OnChange = Callable[[list[Object]], None]  # the objects that changed: one per watch event, any after a list


def key_of(obj: Object) -> Key:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def labels_of(obj: Object) -> Mapping[str, str]:
    labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
    return labels


def matches(obj: Object, selector: Mapping[str, str]) -> bool:
    labels = labels_of(obj)
    return all(labels.get(k) == v for k, v in selector.items())


def changed_by_list(before: Mapping[Key, Object], after: Mapping[Key, Object]) -> list[Object]:
    """What a fresh list tells that the watch did not: objects new, changed (by resourceVersion) or gone."""

    def version(obj: Object) -> object:
        return (obj.get("metadata") or {}).get("resourceVersion")

    changed = [obj for key, obj in after.items() if key not in before or version(before[key]) != version(obj)]
    return changed + [obj for key, obj in before.items() if key not in after]


def trimmed(obj: Object) -> Object:
    """`obj` with only the `metadata.managedFields` entries that own `spec.replicas`, each cut to its
    manager, operation, subresource and that one field (a shallow copy when it had any)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    kept = {k: v for k, v in metadata.items() if k != "managedFields"}
    owners = [_replicas_entry(e) for e in metadata["managedFields"] or [] if _owns_replicas(e)]
    if owners:
        kept["managedFields"] = owners
    return {**obj, "metadata": kept}


def _owns_replicas(entry: object) -> bool:
    if not isinstance(entry, Mapping):
        return False
    spec = (entry.get("fieldsV1") or {}).get("f:spec")
    return isinstance(spec, Mapping) and "f:replicas" in spec


def _replicas_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    cut = {k: entry[k] for k in ("manager", "operation", "subresource") if k in entry}
    return {**cut, "fieldsV1": {"f:spec": {"f:replicas": {}}}}


def _older(obj: Object, than: Object) -> bool:
    """resourceVersions are opaque, but the API server's are etcd revisions: integers that grow."""
    mine, theirs = ((o.get("metadata") or {}).get("resourceVersion") for o in (obj, than))
    return str(mine).isdigit() and str(theirs).isdigit() and int(str(mine)) < int(str(theirs))


class Store:
    """Objects by key, and the keys by (namespace, value of the index label)."""

    def __init__(self, index_label: str | None = None) -> None:
        self.index_label = index_label
        self.objects: dict[Key, Object] = {}
        self._index: dict[tuple[str, str], set[Key]] = {}

    def replace(self, objects: Iterable[Object]) -> None:
        self.objects, self._index = {}, {}
        for obj in objects:
            self.put(obj)

    def put(self, obj: Object) -> None:
        """Stores `obj`, unless what is stored is newer (a write remembered before its watch event)."""
        obj = trimmed(obj)
        key = key_of(obj)
        if (old := self.objects.get(key)) is not None and _older(obj, old):
            return
        self.remove(key)
        self.objects[key] = obj
        if (slot := self._slot(obj)) is not None:
            self._index.setdefault(slot, set()).add(key)

    def remove(self, key: Key) -> None:
        obj = self.objects.pop(key, None)
        if obj is not None and (slot := self._slot(obj)) is not None:
            keys = self._index.get(slot, set())
            keys.discard(key)
            if not keys:
                self._index.pop(slot, None)

    def select(self, namespace: str | None, selector: Mapping[str, str]) -> list[Object]:
        """The objects in `namespace` (None: all) whose labels equal every term of `selector` (read only)."""
        if self.index_label is not None and self.index_label in selector and namespace is not None:
            keys: Iterable[Key] = sorted(self._index.get((namespace, selector[self.index_label]), ()))
            found = [self.objects[k] for k in keys]
        else:
            found = [o for k, o in sorted(self.objects.items()) if namespace is None or k[0] == namespace]
        return [o for o in found if matches(o, selector)]

    def _slot(self, obj: Object) -> tuple[str, str] | None:
        if self.index_label is None:
            return None
        value = labels_of(obj).get(self.index_label)
        return None if value is None else (key_of(obj)[0], value)


class Informer:
    """The objects of one resource in one namespace (or all), kept by list-then-watch until cancelled."""

    def __init__(
        self,
        client: AsyncClient,
        resource: type[NamespacedResource],
        namespace: str | None,
        on_change: OnChange,
        *,
        labels: dict[str, Any] | None = None,
        index_label: str | None = None,
        backoff: Backoff | None = None,
        server_timeout_s: int = 300,
        stable_s: float = 60.0,
        absent_is_empty: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace  # None: every namespace
        self.labels = labels  # the selector of the list and watch ({key: None}: the label exists)
        self.on_change = on_change
        self.store = Store(index_label)
        self.synced = False  # listed at least once
        self.backoff = backoff or Backoff()
        self.server_timeout_s = server_timeout_s
        self.stable_s = stable_s  # a list and watch that lasted this long starts the backoff over
        # A resource the API server does not serve (404: its CRD is not installed) reads as none of it;
        # only for optional resources, whose absence readers may act on.
        self.absent_is_empty = absent_is_empty
        self.logger = logger or logging.getLogger("phalanx.kube")

    @property
    def what(self) -> str:
        return f"{self.resource.__name__} in {self.namespace or 'all namespaces'}"

    @property
    def objects(self) -> dict[Key, Object]:
        return self.store.objects

    def select(self, namespace: str | None, selector: Mapping[str, str]) -> list[Object]:
        return self.store.select(namespace, selector)

    async def run(self) -> None:
        await retry(
            self._list_and_watch,
            what=f"watching {self.what}",
            backoff=self.backoff,
            retry_on=lambda _: True,  # never given up: cancelled
            reset_after=self.stable_s,
            logger=self.logger,
            then="listing again",
        )

    async def _list_and_watch(self) -> NoReturn:
        listing = self.client.list(self.resource, namespace=self.namespace or "*", labels=self.labels)
        fresh = {}
        try:
            async for obj in listing:
                data = as_dict(obj)
                fresh[key_of(data)] = data
        except Exception as exc:
            if not self.absent_is_empty or status_of(exc) != 404:
                raise
            # Readers act on "none" rather than wait forever for a first list; listing goes on with
            # the backoff and finds the objects once the CRD is installed.
            self._listed({})
            raise
        self._listed(fresh)
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
                self.store.remove(key_of(data))
            elif kind in ("ADDED", "MODIFIED"):
                self.store.put(data)
            else:
                continue
            self.on_change([data])
        raise WatchEnded("the watch ended")

    def _listed(self, fresh: dict[Key, Object]) -> None:
        changed = changed_by_list(self.store.objects, fresh)
        self.store.replace(fresh.values())
        self.synced = True
        self.on_change(changed)
