"""What the controller core decides: actions for a runtime to carry out, events, and the status.

Actions name Kubernetes-shaped objects, so one runtime adapter per platform can apply them: the
Kubernetes API on a cluster, the in-memory store and process kubelet of the local runtime.
A runtime applies a decision's actions in order; each is idempotent (create tolerates an existing
object, delete a missing one), so a crash half-way leaves nothing the next reconcile cannot finish.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from phalanx.api.modelserving import ModelServingStatus

Object = dict[str, Any]
Kind = Literal["Pod", "Service", "PodGroup", "ControllerRevision"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class _WithObject:
    object: Object

    @property
    def kind(self) -> str:
        return str(self.object["kind"])

    @property
    def name(self) -> str:
        return str(self.object["metadata"]["name"])


@dataclass(frozen=True)
class Create(_WithObject):
    """Create the object; an existing one of the same kind and name is left as it is."""


@dataclass(frozen=True)
class Delete:
    kind: Kind
    name: str


@dataclass(frozen=True)
class Annotate:
    """Merge annotations into an object; a None value removes the key."""

    kind: Kind
    name: str
    annotations: Mapping[str, str | None]


@dataclass(frozen=True)
class Apply(_WithObject):
    """Create the object, or bring an existing one's labels and spec to this content (server-side
    apply). Used for objects whose spec follows the ModelServing: gang objects track role scaling."""


Action = Create | Delete | Annotate | Apply


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str
    # The object the event is about: the ModelServing itself unless a pod or group is named.
    object_kind: str = "ModelServing"
    object_name: str = ""


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    status: ModelServingStatus
    events: tuple[Event, ...] = ()
    # Reconcile again after this many seconds even if nothing changes (grace periods, backoff, drain).
    requeue_after: float | None = None
    # Entry pods the router must stop sending new requests to (draining groups).
    draining: frozenset[str] = field(default_factory=frozenset)
