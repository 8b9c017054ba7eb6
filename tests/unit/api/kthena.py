"""Test helper: a ModelServing as it comes back from a Kthena cluster (`kubectl get -o yaml`).

Kthena's API server applies the structural defaults of its CRD (workload.serving.volcano.sh, v1alpha1)
when an object is created: nulls are dropped, then every absent field with a default is filled in,
inside every object that exists (a default never creates its parent). Its controller writes a status,
and the API server its own metadata. `round_trip` does all of that to a manifest, `as_phalanx` then
changes only the apiVersion: the rule is that the result validates as the manifest did.

`KTHENA_DEFAULTS` lists the defaults of Kthena's CRD by path (`*` is every item of a list). It is
written here by hand; `check_kthena_repo.py` (run by hand where Kthena's repository is at hand)
compares it with the CRD itself.
"""

from __future__ import annotations

import copy
from typing import Any

KTHENA_API_VERSION = "workload.serving.volcano.sh/v1alpha1"
PHALANX_API_VERSION = "serving.phalanx.dev/v1alpha1"

Path = tuple[str, ...]

_CONTAINER: list[tuple[Path, Any]] = [
    (("ports", "*", "protocol"), "TCP"),
    (("envFrom", "*", "configMapRef", "name"), ""),
    (("envFrom", "*", "secretRef", "name"), ""),
    (("env", "*", "valueFrom", "configMapKeyRef", "name"), ""),
    (("env", "*", "valueFrom", "secretKeyRef", "name"), ""),
    (("env", "*", "valueFrom", "fileKeyRef", "optional"), False),
    (("livenessProbe", "grpc", "service"), ""),
    (("readinessProbe", "grpc", "service"), ""),
    (("startupProbe", "grpc", "service"), ""),
]
_VOLUME: list[tuple[Path, Any]] = [
    (("azureDisk", "fsType"), "ext4"),
    (("azureDisk", "readOnly"), False),
    (("cephfs", "secretRef", "name"), ""),
    (("cinder", "secretRef", "name"), ""),
    (("configMap", "name"), ""),
    (("csi", "nodePublishSecretRef", "name"), ""),
    (("flexVolume", "secretRef", "name"), ""),
    (("iscsi", "iscsiInterface"), "default"),
    (("iscsi", "secretRef", "name"), ""),
    (("projected", "sources", "*", "configMap", "name"), ""),
    (("projected", "sources", "*", "secret", "name"), ""),
    (("rbd", "keyring"), "/etc/ceph/keyring"),
    (("rbd", "pool"), "rbd"),
    (("rbd", "user"), "admin"),
    (("rbd", "secretRef", "name"), ""),
    (("scaleIO", "fsType"), "xfs"),
    (("scaleIO", "storageMode"), "ThinProvisioned"),
    (("scaleIO", "secretRef", "name"), ""),
    (("storageos", "secretRef", "name"), ""),
]
_POD_SPEC: list[tuple[Path, Any]] = [
    *(
        ((kind, "*", *path), value)
        for kind in ("containers", "initContainers", "ephemeralContainers")
        for path, value in _CONTAINER
    ),
    (("imagePullSecrets", "*", "name"), ""),
    *((("volumes", "*", *path), value) for path, value in _VOLUME),
]
_ROLE = ("spec", "template", "roles", "*")

KTHENA_DEFAULTS: list[tuple[Path, Any]] = [
    (("spec", "replicas"), 1),
    (("spec", "schedulerName"), "volcano"),
    (("spec", "recoveryPolicy"), "RoleRecreate"),
    (("spec", "plugins", "*", "type"), "BuiltIn"),
    (("spec", "rolloutStrategy", "type"), "ServingGroupRollingUpdate"),
    (("spec", "rolloutStrategy", "rollingUpdateConfiguration", "maxUnavailable"), 1),
    (("spec", "template", "restartGracePeriodSeconds"), 0),
    (("spec", "template", "networkTopology", "groupPolicy", "mode"), "hard"),
    (("spec", "template", "networkTopology", "rolePolicy", "mode"), "hard"),
    ((*_ROLE, "replicas"), 1),
    ((*_ROLE, "maxUnavailable"), 1),
    *(
        ((*_ROLE, template, "spec", *path), value)
        for template in ("entryTemplate", "workerTemplate")
        for path, value in _POD_SPEC
    ),
]
"""Every default of Kthena's ModelServing CRD; parents first, so a default may fill a defaulted parent."""

_OPAQUE: list[Path] = [("spec", "plugins", "*", "config")]  # preserve-unknown-fields: nulls are kept


def _drop_nulls(value: Any, path: Path) -> Any:
    if any(_matches(path, opaque) for opaque in _OPAQUE):
        return value
    if isinstance(value, dict):
        return {k: _drop_nulls(v, (*path, k)) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v, (*path, "*")) for v in value]
    return value


def _matches(path: Path, pattern: Path) -> bool:
    return len(path) == len(pattern) and all(p in ("*", q) for p, q in zip(pattern, path, strict=True))


def _fill(node: Any, path: Path, value: Any) -> None:
    head, *rest = path
    if head == "*":
        for item in node if isinstance(node, list) else []:
            _fill(item, tuple(rest), value)
        return
    if not isinstance(node, dict):
        return
    if not rest:
        node.setdefault(head, copy.deepcopy(value))
    elif head in node:
        _fill(node[head], tuple(rest), value)


def apply_kthena_defaults(manifest: dict[str, Any]) -> dict[str, Any]:
    """What Kthena's API server stores for `manifest`: nulls pruned, then the CRD's defaults."""
    stored = _drop_nulls(copy.deepcopy(manifest), ())
    for path, value in KTHENA_DEFAULTS:
        _fill(stored, path, value)
    return stored


KTHENA_STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "replicas": 2,
    "currentReplicas": 2,
    "updatedReplicas": 2,
    "availableReplicas": 1,
    "currentRevision": "5d8f7c9b6",
    "updateRevision": "5d8f7c9b6",
    "labelSelector": "modelserving.volcano.sh/name=demo,modelserving.volcano.sh/entry=true",
    "conditions": [
        {
            "type": "UpdateInProgress",
            "status": "True",
            "reason": "GroupsUpdating",
            "message": "Some groups are progressing: [1], Some groups are updated: [0]",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
        },
        {
            "type": "Available",
            "status": "False",
            "reason": "AllGroupsReady",
            "message": "All groups are ready",
            "lastTransitionTime": "2026-01-02T03:00:00Z",
        },
    ],
}

SERVER_METADATA: dict[str, Any] = {
    "uid": "0b6a3f3e-5d2c-4a8e-9a51-2f1f6c1d9e77",
    "resourceVersion": "48213",
    "generation": 3,
    "creationTimestamp": "2026-01-02T02:58:00Z",
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"..."}'},
    "managedFields": [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": KTHENA_API_VERSION,
            "time": "2026-01-02T02:58:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {".": {}, "f:replicas": {}}},
        }
    ],
}


def round_trip(manifest: dict[str, Any], *, with_status: bool = True) -> dict[str, Any]:
    """`manifest` created on a Kthena cluster and read back with `kubectl get -o yaml`."""
    stored = apply_kthena_defaults(manifest)
    metadata = stored.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        return stored  # not an object the API server would store
    metadata.setdefault("namespace", "default")
    for key, value in SERVER_METADATA.items():
        if key == "annotations":
            metadata["annotations"] = {**metadata.get("annotations", {}), **value}
        else:
            metadata[key] = copy.deepcopy(value)
    if with_status:
        stored["status"] = copy.deepcopy(KTHENA_STATUS)
    return stored


def as_phalanx(obj: dict[str, Any]) -> dict[str, Any]:
    """The same object with only its apiVersion changed to Phalanx's."""
    return {**copy.deepcopy(obj), "apiVersion": PHALANX_API_VERSION}
