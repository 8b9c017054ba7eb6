"""Which replica counts a ModelDeployment's apply sends to the ModelServing it compiles to.

The plan's counts go out when the ModelServing is created, and whenever nothing autoscales it (so
a change of the deployment's `spec.replicas` takes effect). Once an autoscaler owns the count, a
re-apply must not reset it: with server-side apply, the count is left out when another field
manager owns `spec.replicas` (it keeps it), and otherwise the stored count is sent back, since a
field its only applier stops sending is removed and then defaulted.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from typing import Any

SCALE_SUBRESOURCE = "scale"  # HPA, KEDA and `kubectl scale` write spec.replicas through it


def replicas_owners(stored: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(manager, operation, subresource) of every managedFields entry owning `spec.replicas`."""
    entries = ((stored or {}).get("metadata") or {}).get("managedFields") or []
    owners = []
    for entry in entries:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if isinstance(fields, Mapping) and "f:replicas" in fields:
            owners.append(
                (
                    str(entry.get("manager", "")),
                    str(entry.get("operation", "")),
                    str(entry.get("subresource", "")),
                )
            )
    return owners


def autoscaled(
    deployment_autoscales: bool,
    policy_targets: Iterable[str],
    serving_name: str,
    stored: Mapping[str, Any] | None,
) -> bool:
    """Whether an autoscaler owns the ModelServing's count: the deployment has `spec.autoscaling`,
    an AutoscalingPolicy (`policy_targets`: the names its policies scale) targets it, or a write
    through its scale subresource owns `spec.replicas` (HPA, KEDA, `kubectl scale`)."""
    if deployment_autoscales or serving_name in set(policy_targets):
        return True
    return any(subresource == SCALE_SUBRESOURCE for _, _, subresource in replicas_owners(stored))


def counts_to_send(
    serving: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    *,
    autoscaled: bool,
    manager: str,
    scaled_roles: Collection[str] = (),
) -> dict[str, Any]:
    """`serving` (the compiled ModelServing as a dict) with the counts its apply should carry.

    `stored` is the ModelServing as read (None: not created yet); `manager` the apply's field
    manager. Not autoscaled, or not created: the plan's counts. Autoscaled: `spec.replicas` left
    out when a manager other than this apply owns it, else the stored count. The roles a policy on
    roles scales (`scaled_roles`) keep their stored `replicas`: the roles list is atomic, so it is
    always sent whole."""
    out = copy.deepcopy(dict(serving))
    if stored is None:
        return out
    spec = out.setdefault("spec", {})
    stored_spec = stored.get("spec") or {}
    if scaled_roles:
        _keep_role_counts(spec, stored_spec, scaled_roles)
    if not autoscaled:
        return out
    others = [o for o in replicas_owners(stored) if (o[0], o[1]) != (manager, "Apply")]
    if others:
        spec.pop("replicas", None)
    elif isinstance(stored_spec.get("replicas"), int):
        spec["replicas"] = stored_spec["replicas"]
    return out


def _keep_role_counts(spec: dict[str, Any], stored_spec: Mapping[str, Any], roles: Collection[str]) -> None:
    stored_roles = {
        r.get("name"): r.get("replicas")
        for r in ((stored_spec.get("template") or {}).get("roles") or [])
        if isinstance(r, Mapping)
    }
    for role in (spec.get("template") or {}).get("roles") or []:
        kept = stored_roles.get(role.get("name"))
        if role.get("name") in roles and isinstance(kept, int):
            role["replicas"] = kept
