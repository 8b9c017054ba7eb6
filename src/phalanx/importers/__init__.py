"""`phalanx import`: peer systems' resources (Kthena, LeaderWorkerSet, KAITO, AIBrix) as Phalanx ones.

`import_documents` maps every document of a file: a peer resource becomes a ModelServing or a
ModelDeployment with notes; an autoscaler that targets one is pointed at the new resource; a KAITO
ConfigMap is folded into the ModelDeployment that reads it; anything else (Services, Secrets, routes)
passes through unchanged. Pure: plain data in, plain data out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from phalanx.api.errors import FieldError
from phalanx.api.labels import GROUP_VERSION
from phalanx.importers import aibrix, kaito, kthena, lws
from phalanx.importers.base import Context, Converted, InputError, Note, Object, deep, group_of, source_name

Converter = Callable[[Mapping[str, Any], int, Context], Converted]

# (API group, kind) -> converter.
_CONVERTERS: dict[tuple[str, str], Converter] = {
    **{(group, "ModelServing"): kthena.convert_model_serving for group in kthena.GROUPS},
    **{(group, "ModelInfer"): kthena.convert_model_infer for group in kthena.GROUPS},
    (lws.GROUP, "LeaderWorkerSet"): lws.convert,
    (kaito.GROUP, "Workspace"): kaito.convert_workspace,
    (kaito.GROUP, "InferenceSet"): kaito.convert_inference_set,
    (aibrix.GROUP, "RayClusterFleet"): aibrix.convert_fleet,
    (aibrix.GROUP, "RayClusterReplicaSet"): aibrix.convert_replica_set,
    (aibrix.RAY_GROUP, "RayCluster"): aibrix.convert_ray_cluster,
}
IMPORTABLE = (
    "Kthena ModelServing or ModelInfer, LeaderWorkerSet, KAITO Workspace or InferenceSet, "
    "AIBrix RayClusterFleet or RayClusterReplicaSet, KubeRay RayCluster"
)
_SCALERS = {
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("keda.sh", "ScaledObject"),
    ("autoscaling.aibrix.ai", "PodAutoscaler"),  # scales any target through its scale subresource
}


@dataclass(frozen=True)
class ImportResult:
    """Every document of the input, converted or passed through, in input order."""

    items: list[Converted] = field(default_factory=list)

    @property
    def lost(self) -> bool:
        return any(item.lost for item in self.items)

    @property
    def converted(self) -> list[Converted]:
        return [item for item in self.items if item.converted and item.obj is not None]


def converter_for(obj: Mapping[str, Any]) -> Converter | None:
    return _CONVERTERS.get((group_of(obj.get("apiVersion")), str(obj.get("kind"))))


def _retarget(obj: Mapping[str, Any], document: int, renamed: Mapping[tuple[str, str], str]) -> Converted:
    """An HPA or KEDA ScaledObject whose target was imported now scales the Phalanx resource."""
    out = deep(dict(obj))
    spec = out.get("spec")
    ref = spec.get("scaleTargetRef") if isinstance(spec, dict) else None
    if isinstance(ref, dict) and (str(ref.get("kind")), str(ref.get("name"))) in renamed:
        new_kind = renamed[(str(ref["kind"]), str(ref["name"]))]
        if new_kind != "ModelServing":  # only a ModelServing has a scale subresource
            note = Note(
                ("spec", "scaleTargetRef"),
                f"still targets {ref.get('kind')}/{ref.get('name')}: the imported {new_kind} cannot be "
                "scaled by an autoscaler (no scale subresource); set its spec.replicas instead",
                lost=True,
            )
            return Converted(source_name(obj), document, out, (note,), converted=False)
        old = f"{ref.get('kind')}/{ref.get('name')}"
        ref["apiVersion"] = GROUP_VERSION
        ref["kind"] = new_kind
        note = Note(("spec", "scaleTargetRef"), f"now scales the imported {new_kind} (was {old})")
        return Converted(source_name(obj), document, out, (note,))
    return Converted(source_name(obj), document, out, converted=False)


def _folded(obj: Mapping[str, Any], document: int, used: set[str]) -> Converted | None:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    name = (meta or {}).get("name")
    if obj.get("kind") == "ConfigMap" and isinstance(name, str) and name in used:
        note = Note((), "read into the ModelDeployment that uses it (spec.maxModelLen, engineArgs)")
        return Converted(source_name(obj), document, None, (note,))
    return None


def unexpected_shape(source: str, exc: Exception, document: int) -> FieldError:
    return FieldError(
        (),
        f"{source} has a field of a type its own API would refuse ({type(exc).__name__}: {exc})",
        fix="check the object against its system's API (kubectl apply --dry-run=server on that cluster)",
        document=document,
    )


def _kubernetes_object(obj: Mapping[str, Any]) -> list[FieldError]:
    """What a passed-through object needs for kubectl to take it: a string apiVersion, kind and name."""
    problems = [
        FieldError((key,), "must be a string", value=obj.get(key), fix=f"write the object's {key}")
        for key in ("apiVersion", "kind")
        if not isinstance(obj.get(key), str) or not obj.get(key)
    ]
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name") or meta.get("generateName"), str):
        problems.append(FieldError(("metadata", "name"), "must be a string", fix="give the object a name"))
    return problems


def import_documents(
    documents: Sequence[Any],
    shape: Mapping[str, Any] | None = None,
    model_config: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Convert every peer resource; raises InputError (each problem carries its document index).

    `shape` gives bring-your-own-node KAITO Workspaces their GPU shape (ModelDeployment keys
    instanceType, or gpusPerNode + gpuMemory + gpuProduct); `model_config` (a config.json's data)
    describes a KAITO preset model that the catalog does not know.
    """
    context = Context(tuple(documents), dict(shape or {}), model_config)
    items: list[Converted | None] = [None] * len(documents)
    problems: list[FieldError] = []
    renamed: dict[tuple[str, str], str] = {}
    for index, obj in enumerate(documents):
        if not isinstance(obj, Mapping):
            problems.append(
                FieldError((), "is not a Kubernetes object", fix="check the file", document=index)
            )
            continue
        convert = converter_for(obj)
        if convert is None:
            problems += [replace(p, document=index) for p in _kubernetes_object(obj)]
            continue
        try:
            item = convert(obj, index, context)
        except InputError as exc:
            problems += [replace(problem, document=index) for problem in exc.problems]
            continue
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            # A field of a type the converter did not expect and did not check: still the input's fault.
            problems.append(unexpected_shape(source_name(obj), exc, index))
            continue
        items[index] = item
        if item.obj is not None:
            meta = obj.get("metadata") or {}
            renamed[(str(obj.get("kind")), str(meta.get("name")))] = str(item.obj["kind"])
    if problems:
        raise InputError(problems)
    used = kaito.config_maps_used(list(documents))
    for index, obj in enumerate(documents):
        if items[index] is not None:
            continue
        if (group_of(obj.get("apiVersion")), str(obj.get("kind"))) in _SCALERS:
            items[index] = _retarget(obj, index, renamed)
        else:  # Services, Secrets, routes, and resources that are Phalanx's already
            items[index] = _folded(obj, index, used) or Converted(
                source_name(obj), index, deep(dict(obj)), converted=False
            )
    return ImportResult([item for item in items if item is not None])


__all__ = ["IMPORTABLE", "Converted", "ImportResult", "InputError", "Note", "Object", "import_documents"]
