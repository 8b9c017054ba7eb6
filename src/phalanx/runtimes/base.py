"""The one interface both runtimes implement: a small, Kubernetes-shaped object API.

The reconciler (`phalanx.runtimes.reconciler`) drives the pure controller core through it; the
local runtime implements it with an in-memory store, a gang-aware GPU scheduler and child
processes, the Kubernetes runtime with the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from phalanx.api.modelserving import ModelServing, ModelServingStatus
from phalanx.controller.actions import Event, Kind

Object = dict[str, Any]


class NotFoundError(LookupError):
    """The named object does not exist."""


class Runtime(Protocol):
    """Objects are plain dicts shaped like their Kubernetes counterparts (metadata, spec, status)."""

    async def list_objects(self, kind: Kind, namespace: str, selector: Mapping[str, str]) -> list[Object]:
        """Objects of `kind` in `namespace` whose labels include every `selector` pair."""
        ...

    async def create(self, obj: Object) -> None:
        """Creates the object; an existing object of the same kind and name is left as it is."""
        ...

    async def apply(self, obj: Object) -> None:
        """Creates the object or replaces its labels and spec (server-side apply); status is kept."""
        ...

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        """Starts a graceful delete (pods terminate first); a missing object is not an error."""
        ...

    async def annotate(
        self, kind: Kind, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """Merges annotations (None removes a key); a missing object is not an error."""
        ...

    async def record_event(self, namespace: str, serving: str, event: Event) -> None: ...

    async def list_servings(self) -> list[ModelServing]:
        """Every ModelServing, with `metadata.generation` as the store counts it."""
        ...

    async def write_status(self, namespace: str, name: str, status: ModelServingStatus) -> None:
        """Replaces the status subresource; NotFoundError if the ModelServing is gone."""
        ...

    def served_gangs(self) -> frozenset[str]:
        """The gang objects ('volcano', 'coscheduling') this runtime can create right now."""
        ...

    async def wait_for_change(self, timeout: float) -> None:
        """Returns when any object changed (or was created/deleted), or after `timeout` seconds."""
        ...
