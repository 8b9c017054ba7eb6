"""Kthena's ModelServing (`workload.serving.volcano.sh`) and its older ModelInfer (`workload.volcano.sh`,
`workload.matrixinfer.ai`) as a Phalanx ModelServing.

A ModelServing keeps Kthena's field names, so most of it is copied as written; what differs:
- `spec.plugins` (Kthena's pod-mutating plugin chain) has no equivalent; `lws-standard-labels` is not
  needed because Phalanx puts LeaderWorkerSet's labels on every pod itself.
- Role-level `maxUnavailable`/`partition` act only with `RoleRollingUpdate`; Kthena's CRD defaults
  `maxUnavailable: 1` onto every role, so exported objects carry it: it is dropped where it has no effect.
- Prefill/decode roles get `disaggregation.kind` written out, from the engine flags or from a
  ModelServer's `pdGroup` in the same file (`kthena_pd`).
ModelInfer (before Kthena renamed it) also differs in names: `InferGroup*` values, `gangSchedule`, and
the `modelinfer.*` label keys, which are renamed to the `modelserving.volcano.sh/*` keys Phalanx's pods
carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.api.errors import FieldError, Path
from phalanx.api.labels import GROUP_VERSION
from phalanx.importers.base import (
    Context,
    Converted,
    InputError,
    Notes,
    Object,
    clean_metadata,
    deep,
    note_undefined,
    require_mapping,
    source_name,
)
from phalanx.importers.kthena_pd import make_pd_explicit

GROUPS = ("workload.serving.volcano.sh", "workload.volcano.sh", "workload.matrixinfer.ai")
_OLD_LABEL_PREFIXES = ("modelinfer.volcano.sh/", "modelinfer.matrixinfer.ai/")
_LABEL_PREFIX = "modelserving.volcano.sh/"
# Plugins whose whole effect Phalanx already has.
_BUILT_IN_EFFECT = {
    "lws-standard-labels": "Phalanx puts LeaderWorkerSet's labels (name, group-index, worker-index, "
    "group-key) on every pod itself",
}
_RECOVERY = {"InferGroupRecreate": "ServingGroupRecreate"}
_ROLLOUT = {"InferGroupRollingUpdate": "ServingGroupRollingUpdate"}


def _roles(spec: Mapping[str, Any]) -> list[Any]:
    template = spec.get("template")
    roles = template.get("roles") if isinstance(template, Mapping) else None
    return roles if isinstance(roles, list) else []


def _drop_plugins(spec: Object, notes: Notes) -> None:
    plugins = spec.pop("plugins", None)
    if not isinstance(plugins, list):
        return
    for plugin in plugins:
        name = plugin.get("name") if isinstance(plugin, Mapping) else plugin
        effect = _BUILT_IN_EFFECT.get(str(name))
        if effect:
            notes.info(("spec",), f"plugin {name} is not needed: {effect}")
        else:
            notes.lost(
                ("spec",),
                f"plugin {name} has no equivalent (Phalanx has no pod-mutating plugin chain): "
                "make its changes in the pod templates",
            )


def _drop_inert_role_rollout(spec: Object, notes: Notes) -> None:
    strategy = spec.get("rolloutStrategy")
    kind = strategy.get("type") if isinstance(strategy, Mapping) else None
    if kind == "RoleRollingUpdate":
        return
    for index, role in enumerate(_roles(spec)):
        if not isinstance(role, dict):
            continue
        path: Path = ("spec", "template", "roles", index)
        unavailable = role.pop("maxUnavailable", None)
        if unavailable not in (None, 1):
            notes.info(path, f"maxUnavailable {unavailable!r} dropped: it acts only with RoleRollingUpdate")
        partition = role.pop("partition", None)
        if partition is not None:
            notes.info(path, f"partition {partition!r} dropped: it acts only with RoleRollingUpdate")


def _note_templates(spec: Mapping[str, Any], notes: Notes) -> None:
    for index, role in enumerate(_roles(spec)):
        if not isinstance(role, Mapping):
            continue
        for key in ("entryTemplate", "workerTemplate"):
            template = role.get(key)
            if isinstance(template, Mapping) and isinstance(template.get("spec"), Mapping):
                note_undefined(notes, ("spec", "template", "roles", index, key), template["spec"])


def convert_model_serving(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    notes = Notes()
    spec = deep(dict(require_mapping(obj.get("spec"), ("spec",), "the ModelServing spec")))
    _drop_plugins(spec, notes)
    _drop_inert_role_rollout(spec, notes)
    _note_templates(spec, notes)
    metadata = clean_metadata(obj)
    make_pd_explicit(spec, metadata["name"], metadata.get("namespace", "default"), context.documents, notes)
    out: Object = {"apiVersion": GROUP_VERSION, "kind": "ModelServing", "metadata": metadata}
    out["spec"] = spec
    return Converted(source_name(obj), document, out, tuple(notes.items))


def _rename_labels(value: Any) -> tuple[Any, bool]:
    """`modelinfer.*/x` label keys (in keys, selectors, fieldPaths) -> `modelserving.volcano.sh/x`."""
    if isinstance(value, str):
        renamed = value
        for prefix in _OLD_LABEL_PREFIXES:
            renamed = renamed.replace(prefix, _LABEL_PREFIX)
        return renamed, renamed != value
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            new_key, key_changed = _rename_labels(key)
            new_item, item_changed = _rename_labels(item)
            out[new_key] = new_item
            changed = changed or key_changed or item_changed
        return out, changed
    if isinstance(value, list):
        pairs = [_rename_labels(item) for item in value]
        return [item for item, _ in pairs], any(changed for _, changed in pairs)
    return value, False


def _model_infer_spec(spec: Object, notes: Notes) -> Object:
    recovery = spec.get("recoveryPolicy")
    if isinstance(recovery, str) and recovery in _RECOVERY:
        spec["recoveryPolicy"] = _RECOVERY[recovery]
    strategy = spec.get("rolloutStrategy")
    if isinstance(strategy, dict) and isinstance(strategy.get("type"), str) and strategy["type"] in _ROLLOUT:
        strategy["type"] = _ROLLOUT[strategy["type"]]
    spread = spec.pop("topologySpreadConstraints", None)
    if spread:
        notes.info(
            ("spec",),
            "topologySpreadConstraints dropped: Kthena's ModelInfer controller never read it, so it "
            "had no effect there either; put topologySpreadConstraints in the pod templates to spread pods",
        )
    template = spec.get("template")
    if isinstance(template, dict) and "gangSchedule" in template:
        gang = template.pop("gangSchedule")
        if isinstance(gang, Mapping):
            if gang.get("minRoleReplicas") is not None:
                template["gangPolicy"] = {"minRoleReplicas": deep(gang["minRoleReplicas"])}
            if gang.get("networkTopology") is not None:
                template["networkTopology"] = {"groupPolicy": deep(gang["networkTopology"])}
        notes.info(
            ("spec", "template"),
            "gangSchedule became gangPolicy (minRoleReplicas) and networkTopology.groupPolicy",
        )
    for index, role in enumerate(_roles(spec)):
        if not isinstance(role, dict):
            continue
        for key in ("entryTemplate", "workerTemplate"):
            if key in role:
                role[key], changed = _rename_labels(role[key])
                if changed:
                    notes.info(
                        ("spec", "template", "roles", index, key),
                        "modelinfer.* label keys renamed to modelserving.volcano.sh/*, the keys "
                        "Phalanx's pods carry",
                    )
    return spec


def convert_model_infer(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    notes = Notes()
    spec = deep(dict(require_mapping(obj.get("spec"), ("spec",), "the ModelInfer spec")))
    if not isinstance(spec.get("template"), Mapping):
        raise InputError([FieldError(("spec", "template"), "is required", fix="add the InferGroup template")])
    spec = _model_infer_spec(spec, notes)
    _note_templates(spec, notes)
    metadata = clean_metadata(obj)
    make_pd_explicit(spec, metadata["name"], metadata.get("namespace", "default"), context.documents, notes)
    out: Object = {"apiVersion": GROUP_VERSION, "kind": "ModelServing", "metadata": metadata}
    out["spec"] = spec
    return Converted(source_name(obj), document, out, tuple(notes.items))
