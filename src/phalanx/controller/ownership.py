"""Owner references: what Kubernetes garbage collection follows when an owner is deleted."""

from __future__ import annotations

from typing import Any

from phalanx.api import labels as L


def controlled_by(kind: str, name: str, uid: str | None) -> list[dict[str, Any]]:
    """The controller reference to one of our resources; none until it has a uid (not yet stored)."""
    if not uid:
        return []
    return [
        {
            "apiVersion": L.GROUP_VERSION,
            "kind": kind,
            "name": name,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
