"""Revision hashes: which template a ServingGroup or role instance was built from.

A revision covers everything that changes a pod (the role templates, worker counts, the
scheduler, the gang scheduler and network topology) and nothing that does not (replica counts,
rollout and recovery settings, minRoleReplicas). Changing a covered field rolls the groups;
scaling never does. Kthena's hash covers only the roles (its issue #690); ours does not miss.

A prefill/decode role's pods carry its PD labels and annotations, which are written only when a pod
is created: the hash covers what they say (kind, protocol, bootstrap port, pairing scope) as
resolved, not the `disaggregation` fields as written. Declaring the kind the engine flags already
give, or a pairing scope on a serving without PD roles, changes no pod and rolls nothing; a role
without a PD kind hashes as it did before PD existed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from phalanx.api import labels as L
from phalanx.api.disaggregation import RolePd, pairing, role_pd
from phalanx.api.modelserving import ModelServing, Role
from phalanx.controller.memo import per_object
from phalanx.controller.ownership import controlled_by

_ROLE_FIELDS_NOT_IN_PODS = {"replicas", "max_unavailable", "partition", "disaggregation"}

pd_of: Callable[[Role], RolePd | None] = per_object(role_pd)  # read once per role object


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _group_pod_fields(ms: ModelServing) -> dict[str, Any]:
    topology = ms.spec.template.network_topology
    return {
        "schedulerName": ms.spec.scheduler_name,
        "gangScheduler": ms.gang_scheduler,
        "networkTopology": topology.to_dict() if topology else None,
    }


def role_revision(ms: ModelServing, role: Role) -> str:
    """Hash of one role's pods: its templates and worker count plus the group-wide pod fields."""
    role_fields = role.model_dump(
        by_alias=True, exclude=_ROLE_FIELDS_NOT_IN_PODS, exclude_none=True, mode="json"
    )
    payload: dict[str, Any] = {"role": role_fields, "group": _group_pod_fields(ms)}
    pd = pd_of(role)
    if pd is not None:  # only then: other roles keep the hash they had before PD existed
        payload["pd"] = [pd.kind, pd.protocol, pd.bootstrap_port, pairing(ms)]
    return _digest(payload)


@per_object
def group_revision(ms: ModelServing) -> str:
    """Hash of a whole ServingGroup's pods (all roles, in order)."""
    return _digest(
        {
            "roles": [[role.name, role_revision(ms, role)] for role in ms.spec.template.roles],
            "group": _group_pod_fields(ms),
        }
    )


def revision_object_name(serving: str, revision: str) -> str:
    return f"{serving}-{revision}"


def revision_object(ms: ModelServing) -> dict[str, Any]:
    """A ControllerRevision holding the whole spec, so partitioned groups can be rebuilt from it."""
    revision = group_revision(ms)
    snapshot = {
        "apiVersion": ms.api_version,
        "kind": ms.kind,
        "metadata": {
            "name": ms.name,
            "namespace": ms.namespace,
            "annotations": dict(ms.metadata.annotations),
        },
        "spec": ms.spec.to_dict(),
    }
    metadata: dict[str, Any] = {
        "name": revision_object_name(ms.name, revision),
        "namespace": ms.namespace,
        "labels": {L.NAME: ms.name, L.REVISION: revision},
    }
    owners = controlled_by("ModelServing", ms.name, ms.metadata.uid)
    if owners:
        metadata["ownerReferences"] = owners
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": metadata,
        "data": snapshot,
        "revision": ms.metadata.generation or 1,
    }


def serving_from_revision(obj: dict[str, Any]) -> tuple[str, ModelServing] | None:
    """(revision hash, spec) from a ControllerRevision; None if it is not one of ours or is unreadable."""
    revision = (obj.get("metadata", {}).get("labels") or {}).get(L.REVISION)
    data = obj.get("data")
    if not revision or not isinstance(data, dict):
        return None
    try:
        return revision, ModelServing.model_validate(data)
    except ValidationError:
        return None
