"""The in-memory object store: Kubernetes-shaped objects, ModelServings and events.

Objects are deep-copied on the way in and out, so no caller can change the store behind its back.
Every change bumps a counter and wakes `wait_for_change` (level-triggered watchers re-list).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.api.modelserving import ModelServing, ModelServingStatus
from phalanx.controller.observed import format_time
from phalanx.runtimes.base import NotFoundError

Object = dict[str, Any]
KINDS = ("Pod", "Service", "PodGroup", "ControllerRevision")
Key = tuple[str, str, str]  # (kind, namespace, name)


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based label selection; an empty selector matches everything."""
    return all(labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True)
class LocalEvent:
    time: float
    type: str
    reason: str
    message: str
    namespace: str
    object_kind: str
    object_name: str
    serving: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": format_time(self.time),
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "namespace": self.namespace,
            "involvedObject": {"kind": self.object_kind, "name": self.object_name},
            "serving": self.serving,
        }


class Store:
    def __init__(self, *, clock: Callable[[], float] = time.time, max_events: int = 1000) -> None:
        self.clock = clock
        self._objects: dict[Key, Object] = {}
        self._servings: dict[tuple[str, str], ModelServing] = {}
        self._events: deque[LocalEvent] = deque(maxlen=max_events)
        self.events_recorded = 0  # ever, so readers can tell new events from ones the ring dropped
        self._version = 0
        self.changes = 0
        self._changed = asyncio.Event()

    # --- change notification -------------------------------------------------------------------

    def _touch(self) -> str:
        self._version += 1
        self.changes += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return str(self._version)

    async def wait_for_change(self, timeout: float) -> None:
        event = self._changed
        if timeout <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    # --- objects -------------------------------------------------------------------------------

    @staticmethod
    def key_of(obj: Mapping[str, Any]) -> Key:
        kind = str(obj.get("kind") or "")
        if kind not in KINDS:
            raise ValueError(
                f"the local runtime stores {', '.join(KINDS)}, not {kind or 'objects without a kind'}"
            )
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            raise ValueError(f"{kind} has no metadata.name")
        return kind, namespace_of(obj), str(name)

    def create(self, obj: Object) -> Object | None:
        """Stores a copy with server-set metadata; None (and no change) if the name is taken."""
        key = self.key_of(obj)
        if key in self._objects:
            return None
        stored = copy.deepcopy(obj)
        metadata = stored.setdefault("metadata", {})
        metadata["namespace"] = key[1]
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = format_time(self.clock())
        metadata.pop("deletionTimestamp", None)
        stored["metadata"]["resourceVersion"] = self._touch()
        self._objects[key] = stored
        return copy.deepcopy(stored)

    def get(self, kind: str, namespace: str, name: str) -> Object | None:
        obj = self._objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def peek(self, kind: str, namespace: str, name: str) -> Object | None:
        """The stored object itself, for the runtime's own read-only use (no copy)."""
        return self._objects.get((kind, namespace, name))

    def list_objects(self, kind: str, namespace: str | None, selector: Mapping[str, str]) -> list[Object]:
        return [copy.deepcopy(o) for o in self.select(kind, namespace, selector)]

    def select(self, kind: str, namespace: str | None, selector: Mapping[str, str]) -> list[Object]:
        """Like `list_objects` without copies: for the runtime's own read-only use."""
        found = [
            obj
            for (k, ns, _), obj in self._objects.items()
            if k == kind
            and (namespace is None or ns == namespace)
            and matches(selector, obj["metadata"].get("labels") or {})
        ]
        return sorted(found, key=lambda o: (namespace_of(o), o["metadata"]["name"]))

    def update(self, kind: str, namespace: str, name: str, change: Callable[[Object], None]) -> bool:
        """Applies `change` to the stored object; bumps the version only if something changed."""
        obj = self._objects.get((kind, namespace, name))
        if obj is None:
            return False
        before = copy.deepcopy(obj)
        change(obj)
        obj["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"]
        if obj != before:
            obj["metadata"]["resourceVersion"] = self._touch()
        return True

    def remove(self, kind: str, namespace: str, name: str) -> Object | None:
        obj = self._objects.pop((kind, namespace, name), None)
        if obj is not None:
            self._touch()
        return obj

    # --- ModelServings -------------------------------------------------------------------------

    def apply_serving(self, ms: ModelServing) -> ModelServing:
        """Creates or replaces the spec (and labels/annotations); generation counts spec changes."""
        key = (ms.namespace, ms.name)
        if not ms.name:
            raise ValueError("ModelServing has no metadata.name")
        old = self._servings.get(key)
        if old is None:
            metadata = ms.metadata.model_copy(
                update={
                    "uid": str(uuid.uuid4()),
                    "generation": 1,
                    "creation_timestamp": format_time(self.clock()),
                    "resource_version": None,
                    "deletion_timestamp": None,
                }
            )
            stored = ms.model_copy(update={"metadata": metadata, "status": ms.status or ModelServingStatus()})
        else:
            generation = (old.metadata.generation or 1) + (0 if old.spec == ms.spec else 1)
            metadata = old.metadata.model_copy(
                update={
                    "labels": dict(ms.metadata.labels),
                    "annotations": dict(ms.metadata.annotations),
                    "generation": generation,
                }
            )
            stored = old.model_copy(update={"metadata": metadata, "spec": ms.spec})
            if stored == old:
                return old
        stored = stored.model_copy(
            update={"metadata": stored.metadata.model_copy(update={"resource_version": self._touch()})}
        )
        self._servings[key] = stored
        return stored

    def get_serving(self, namespace: str, name: str) -> ModelServing | None:
        return self._servings.get((namespace, name))

    def list_servings(self) -> list[ModelServing]:
        return [self._servings[key] for key in sorted(self._servings)]

    def write_status(self, namespace: str, name: str, status: ModelServingStatus) -> None:
        old = self._servings.get((namespace, name))
        if old is None:
            raise NotFoundError(f"ModelServing {namespace}/{name} not found")
        if old.status == status:
            return
        metadata = old.metadata.model_copy(update={"resource_version": self._touch()})
        self._servings[(namespace, name)] = old.model_copy(update={"status": status, "metadata": metadata})

    def remove_serving(self, namespace: str, name: str) -> ModelServing | None:
        ms = self._servings.pop((namespace, name), None)
        if ms is not None:
            self._touch()
        return ms

    # --- events --------------------------------------------------------------------------------

    def record(
        self, type_: str, reason: str, message: str, namespace: str, kind: str, name: str, serving: str = ""
    ) -> None:
        self._events.append(LocalEvent(self.clock(), type_, reason, message, namespace, kind, name, serving))
        self.events_recorded += 1

    def events(self, serving: str | None = None) -> list[LocalEvent]:
        return [e for e in self._events if serving is None or e.serving == serving]
