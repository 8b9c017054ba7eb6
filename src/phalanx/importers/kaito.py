"""KAITO's Workspace and InferenceSet (`kaito.sh`) as a Phalanx ModelDeployment (or, for a custom pod
`template`, a ModelServing).

A preset Workspace names a model and an instance type and lets KAITO choose the nodes and the
parallelism; a ModelDeployment says the same and lets Phalanx's planner choose. Mapped:
- `inference.preset.name` -> `spec.model` (KAITO's preset names and Hugging Face ids resolve in the
  catalog); `presetOptions.modelAccessSecret` -> `spec.modelAccessSecret`;
- `resource.instanceType` -> `spec.instanceType`; a bring-your-own-nodes Workspace (no instance type)
  needs the GPU shape from the importer's options, since KAITO reads it from the nodes' labels;
- `resource.labelSelector.matchLabels` -> `spec.nodeSelector` (KAITO pins pods to those nodes);
- the `vllm:` section of the `inference.config` ConfigMap (when the ConfigMap is in the same file) ->
  `maxModelLen`, `gpuMemoryUtilization` and, for every other key, `engineArgs` in the order KAITO
  appends them (after its own flags, so they win there and here);
- InferenceSet `spec.replicas` -> `spec.replicas` (one Workspace per replica is one ServingGroup).
KAITO creates no gang objects and its pods use the default scheduler; the import keeps that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from phalanx import planner
from phalanx.api.errors import FieldError, Path, SpecError
from phalanx.api.labels import GROUP_VERSION
from phalanx.api.yamlfile import parse_yaml
from phalanx.importers.base import (
    Context,
    Converted,
    InputError,
    Notes,
    Object,
    clean_metadata,
    deep,
    group_of,
    note_undefined,
    optional_mapping,
    require_mapping,
    source_name,
    source_pod_template,
    string_map,
)
from phalanx.importers.lws import DEFAULT_SCHEDULER

GROUP = "kaito.sh"
CONFIG_KEY = "inference_config.yaml"
_ANNOTATION_NOTES = {
    "kaito.sh/enablelb": (
        True,
        "enablelb: KAITO exposes the model through a LoadBalancer Service; Phalanx's client Service is "
        "ClusterIP (front it with the router, or create a LoadBalancer Service)",
    ),
    "kaito.sh/runtime": (False, ""),  # handled on its own
    "kaito.sh/disable-benchmark": (False, "disable-benchmark: Phalanx runs no post-load benchmark"),
    "kaito.sh/bypass-resource-checks": (
        False,
        "bypass-resource-checks: Phalanx's planner always checks memory",
    ),
}
# vLLM settings a ModelDeployment has fields for.
_PLANNED = {"max-model-len": "maxModelLen", "gpu-memory-utilization": "gpuMemoryUtilization"}
# KAITO's own settings in inference_config.yaml, outside `vllm:`.
_KAITO_ONLY = {
    "max_probe_steps": "KAITO probes for the largest context that fits; Phalanx's planner computes it",
    "kv_cache_cpu_memory_utilization": "KAITO offloads KV cache to CPU memory with LMCache; Phalanx does not",
}


def _preset_model(preset: Mapping[str, Any], context: Context, notes: Notes) -> str | Object:
    """The catalog name of the preset, or (for a model the catalog lacks) the name with its config.json."""
    name = preset.get("name")
    path: Path = ("inference", "preset", "name")
    if not isinstance(name, str) or not name:
        raise InputError([FieldError(path, "is required", fix="name a KAITO preset model")])
    model = planner.find_model(name)
    if model is not None:
        return model.name
    if context.model_config is not None:
        notes.info(("spec", "model"), f"{name} is not in the catalog: planned from the given config.json")
        return {"name": name, "config": deep(dict(context.model_config))}
    close = planner.suggest_models(name)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise InputError(
        [
            FieldError(
                path,
                "is not a model Phalanx's planner knows",
                value=name,
                fix=f"{hint}see `phalanx plan --list`; for any other model, import with --model-config "
                "pointing at its config.json (KAITO downloads it; an import cannot)",
            )
        ]
    )


def _flag(key: str, value: Any) -> list[str]:
    """A `vllm:` key as vLLM flags; booleans as vLLM's --flag / --no-flag switches."""
    if isinstance(value, bool):
        return [f"--{key}" if value else f"--no-{key}"]
    return [f"--{key}={value}"]


def _config_map(name: str, documents: Sequence[Any]) -> Mapping[str, Any] | None:
    for obj in documents:
        if (
            isinstance(obj, Mapping)
            and obj.get("kind") == "ConfigMap"
            and isinstance(obj.get("metadata"), Mapping)
            and obj["metadata"].get("name") == name
        ):
            return obj
    return None


def _config_text(config_map: Mapping[str, Any], name: str) -> Any:
    data = config_map.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise InputError(
            [
                FieldError(
                    ("inference", "config"),
                    f"names ConfigMap {name}, whose data is not a mapping",
                    value=data,
                    fix=f"give ConfigMap {name} a data mapping with the key {CONFIG_KEY}",
                )
            ]
        )
    return (data or {}).get(CONFIG_KEY)


def _inference_config(name: str, documents: Sequence[Any], spec: Object, notes: Notes) -> None:
    config_map = _config_map(name, documents)
    if config_map is None:
        notes.lost(
            ("spec",),
            f"inference.config names ConfigMap {name}, which is not in this file: its vLLM settings are not "
            "carried over (import the file that holds it too)",
        )
        return
    text = _config_text(config_map, name)
    if not isinstance(text, str):
        notes.lost(("spec",), f"ConfigMap {name} has no {CONFIG_KEY}; nothing carried over")
        return
    try:
        documents_in = parse_yaml(text, f"ConfigMap {name}")
    except SpecError as exc:
        raise InputError(
            [FieldError(("inference", "config"), f"{CONFIG_KEY} is not YAML: {exc.render()}")]
        ) from None
    config = documents_in[0].data if documents_in else {}
    if not isinstance(config, Mapping):
        raise InputError(
            [FieldError(("inference", "config"), f"ConfigMap {name}: {CONFIG_KEY} is not a mapping")]
        )
    for key, reason in _KAITO_ONLY.items():
        if key in config:
            notes.info(("spec",), f"{key} ({name}) dropped: {reason}")
    vllm = config.get("vllm") or {}
    if not isinstance(vllm, Mapping):
        raise InputError([FieldError(("inference", "config"), f"ConfigMap {name}: vllm is not a mapping")])
    args: list[str] = []
    for key, value in vllm.items():
        if key in _PLANNED:
            spec[_PLANNED[key]] = value
        else:
            args += _flag(str(key), value)
    if args:
        spec["engineArgs"] = args
        notes.info(
            ("spec", "engineArgs"),
            f"from ConfigMap {name}: appended after the planned flags, as KAITO appends them after its own",
        )


def _shape(resource: Mapping[str, Any], spec: Object, shape: Mapping[str, Any]) -> None:
    instance = resource.get("instanceType")
    if isinstance(instance, str) and instance:
        if planner.find_instance_type(instance) is None:
            close = planner.suggest_instance_types(instance)
            shape_fix = "import with --gpus-per-node and --gpu-memory (per GPU) instead"
            fix = (
                f"did you mean {', '.join(close)}? Otherwise {shape_fix}" if close else shape_fix.capitalize()
            )
            raise InputError(
                [
                    FieldError(
                        ("resource", "instanceType"),
                        "is not an instance type Phalanx's catalog knows",
                        value=instance,
                        fix=fix,
                    )
                ]
            )
        spec["instanceType"] = instance
        return
    if shape.get("instanceType"):
        spec["instanceType"] = shape["instanceType"]
    elif shape.get("gpusPerNode") and shape.get("gpuMemory"):
        spec.update({k: shape[k] for k in ("gpusPerNode", "gpuMemory", "gpuProduct") if shape.get(k)})
    else:
        raise InputError(
            [
                FieldError(
                    ("resource", "instanceType"),
                    "is empty (bring-your-own nodes): KAITO reads the GPU shape from the nodes; "
                    "an import cannot",
                    fix="import with --instance-type NAME, or --gpus-per-node N --gpu-memory 80Gi",
                )
            ]
        )


def _resource(resource: Mapping[str, Any], spec: Object, notes: Notes, shape: Mapping[str, Any]) -> None:
    _shape(resource, spec, shape)
    selector = optional_mapping(
        resource.get("labelSelector"), ("resource", "labelSelector"), "a label selector"
    )
    if selector:
        labels = string_map(
            selector.get("matchLabels"), ("resource", "labelSelector", "matchLabels"), "labels"
        )
        if labels:
            spec["nodeSelector"] = labels
        if selector.get("matchExpressions"):
            notes.lost(
                ("spec", "nodeSelector"), "labelSelector.matchExpressions has no ModelDeployment field"
            )
    if resource.get("count") is not None:
        notes.info(
            ("spec",),
            f"resource.count {resource['count']} dropped: KAITO ignores it for vLLM and sizes the nodes "
            "with its estimator; Phalanx's planner sizes them (pin a count with spec.nodes)",
        )
    if resource.get("preferredNodes"):
        notes.lost(("spec",), "resource.preferredNodes has no equivalent (deprecated in KAITO too)")
    if resource.get("partition"):
        notes.lost(("spec",), "resource.partition (MIG or accelerator partitions) has no equivalent")


def _annotations(metadata: Object, spec: Object, notes: Notes) -> None:
    annotations = metadata.get("annotations") or {}
    runtime = annotations.pop("kaito.sh/runtime", None)
    if runtime not in (None, "vllm"):
        notes.lost(("spec", "engine"), f"runtime {runtime} is not supported: the model is served with vLLM")
    for key in sorted(annotations):
        if key in _ANNOTATION_NOTES or key.startswith("kaito.sh/"):
            lost, text = _ANNOTATION_NOTES.get(key, (False, f"{key} dropped: it tunes KAITO's controller"))
            annotations.pop(key)
            if lost:
                notes.lost(("metadata",), text)
            elif text:
                notes.info(("metadata",), text)
    autoscaling = sorted(key for key in annotations if key.startswith("scaledobject.kaito.sh/"))
    for key in autoscaling:
        annotations.pop(key)
    if autoscaling:
        notes.lost(
            ("metadata",),
            f"{', '.join(autoscaling)}: KAITO makes a KEDA ScaledObject from these; Phalanx does not "
            "autoscale a ModelDeployment (set spec.replicas)",
        )
    if not annotations:
        metadata.pop("annotations", None)


def _deployment(
    obj: Mapping[str, Any], body: Mapping[str, Any], context: Context, notes: Notes, replicas: int | None
) -> Object:
    metadata = clean_metadata(obj)
    inference = require_mapping(body.get("inference"), ("inference",), "the inference section")
    preset = require_mapping(inference.get("preset"), ("inference", "preset"), "the preset model")
    spec: Object = {"model": _preset_model(preset, context, notes), "engine": "vllm"}
    options = preset.get("presetOptions")
    if isinstance(options, Mapping) and options.get("modelAccessSecret"):
        spec["modelAccessSecret"] = options["modelAccessSecret"]
    resource = require_mapping(body.get("resource"), ("resource",), "the resource section")
    _resource(resource, spec, notes, context.shape)
    if replicas is not None:
        spec["replicas"] = replicas
    spec["schedulerName"] = DEFAULT_SCHEDULER
    notes.info(
        ("spec", "schedulerName"),
        "KAITO places a Workspace's pods one by one with the default scheduler; set volcano to start "
        "each group whole or not at all",
    )
    if inference.get("config") is not None:
        if not isinstance(inference["config"], str):
            raise InputError(
                [FieldError(("inference", "config"), "must be a ConfigMap name", value=inference["config"])]
            )
        _inference_config(inference["config"], context.documents, spec, notes)
    if inference.get("adapters"):
        notes.lost(("spec",), "inference.adapters (LoRA adapters) have no equivalent")
    _annotations(metadata, spec, notes)
    return {"apiVersion": GROUP_VERSION, "kind": "ModelDeployment", "metadata": metadata, "spec": spec}


def _custom_template(obj: Mapping[str, Any], template: Mapping[str, Any], notes: Notes) -> Object:
    """A Workspace with its own pod template: KAITO runs one pod of it; so does a one-role ModelServing."""
    source_pod_template(template, ("inference", "template"), "the model's pod template")
    entry: Object = {"spec": deep(dict(template["spec"]))}
    meta = template.get("metadata")
    if isinstance(meta, Mapping):
        kept = {k: deep(meta[k]) for k in ("labels", "annotations") if meta.get(k)}
        if kept:
            entry["metadata"] = kept
    scheduler = entry["spec"].pop("schedulerName", None) or DEFAULT_SCHEDULER
    note_undefined(notes, ("spec", "template", "roles", 0, "entryTemplate"), entry["spec"])
    role = {"name": "model", "replicas": 1, "entryTemplate": entry, "workerReplicas": 0}
    spec = {"replicas": 1, "schedulerName": scheduler, "template": {"roles": [role]}}
    metadata = clean_metadata(obj)
    _annotations(metadata, spec, notes)
    return {"apiVersion": GROUP_VERSION, "kind": "ModelServing", "metadata": metadata, "spec": spec}


def convert_workspace(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    notes = Notes()
    if obj.get("tuning"):
        raise InputError(
            [
                FieldError(
                    ("tuning",),
                    "is a fine-tuning job, not a model to serve",
                    fix="import a Workspace with inference",
                )
            ]
        )
    inference = require_mapping(obj.get("inference"), ("inference",), "the inference section")
    if isinstance(inference.get("template"), Mapping):
        out = _custom_template(obj, inference["template"], notes)
    else:
        out = _deployment(obj, obj, context, notes, replicas=None)
    return Converted(source_name(obj), document, out, tuple(notes.items))


def convert_inference_set(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    notes = Notes()
    spec = require_mapping(obj.get("spec"), ("spec",), "the InferenceSet spec")
    template = require_mapping(spec.get("template"), ("spec", "template"), "the Workspace template")
    replicas = spec.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise InputError([FieldError(("spec", "replicas"), "must be a whole number >= 0", value=replicas)])
    body: Object = dict(template)
    resource = dict(
        optional_mapping(body.get("resource"), ("spec", "template", "resource"), "the resource section")
    )
    if isinstance(spec.get("labelSelector"), Mapping):
        resource.setdefault("labelSelector", spec["labelSelector"])
    body["resource"] = resource
    try:
        out = _deployment(obj, body, context, notes, replicas=replicas)
    except InputError as exc:  # the Workspace fields sit under spec.template in an InferenceSet
        raise InputError([p.under(("spec", "template")) for p in exc.problems]) from None
    if spec.get("nodeCountLimit") is not None:
        notes.lost(("spec", "replicas"), f"nodeCountLimit {spec['nodeCountLimit']} has no equivalent")
    if spec.get("updateStrategy"):
        notes.info(("spec",), "updateStrategy dropped: ServingGroups roll one at a time (rolloutStrategy)")
    return Converted(source_name(obj), document, out, tuple(notes.items))


def config_maps_used(documents: list[Any]) -> set[str]:
    """ConfigMaps a Workspace in the file reads: folded into its ModelDeployment."""
    used: set[str] = set()
    for obj in documents:
        if not isinstance(obj, Mapping) or group_of(obj.get("apiVersion")) != GROUP:
            continue
        spec = obj.get("spec")
        template = spec.get("template") if isinstance(spec, Mapping) else None
        body = template if obj.get("kind") == "InferenceSet" else obj
        inference = body.get("inference") if isinstance(body, Mapping) else None
        if isinstance(inference, Mapping) and isinstance(inference.get("config"), str):
            used.add(inference["config"])
    return used
