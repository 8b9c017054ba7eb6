"""A LeaderWorkerSet (`leaderworkerset.x-k8s.io/v1`) as a Phalanx ModelServing.

An LWS group (a leader and `size - 1` workers) is a role instance: one role, `default` (the name
Kthena's own LWS integration gives it), with the leader template as entry and `size - 1` workers. The
LWS env variables, labels and per-pod DNS names are on every Phalanx pod, so the templates' commands
run unchanged. Placement is kept as LWS would place the pods: the default scheduler unless the
templates ask for Volcano (LWS gangs a group only with Volcano).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.api.errors import FieldError, Path
from phalanx.api.labels import GROUP_VERSION
from phalanx.api.names import DNS_LABEL_MAX
from phalanx.importers.base import (
    Context,
    Converted,
    InputError,
    Notes,
    Object,
    clean_metadata,
    deep,
    note_undefined,
    optional_list,
    optional_mapping,
    require_mapping,
    source_name,
    source_pod_template,
    string_map,
)

GROUP = "leaderworkerset.x-k8s.io"
ROLE = "default"
SHORT_ROLE = "g"  # when `default` would make pod names longer than a DNS label
DEFAULT_SCHEDULER = "default-scheduler"
_LWS = "leaderworkerset.sigs.k8s.io/"
_GROUP_KEY = _LWS + "group-key"
_EXCLUSIVE = _LWS + "exclusive-topology"
_SUBGROUP_EXCLUSIVE = _LWS + "subgroup-exclusive-topology"
_RESTART = {
    "RecreateGroupOnPodRestart": "RoleRecreate",
    "RecreateGroupAfterStart": "RoleRecreate",
    "None": "None",
    "Default": "None",  # deprecated alias LWS's webhook turns into None
}
_TEMPLATE: Path = ("spec", "template", "roles", 0)


def _int(spec: Mapping[str, Any], key: str, default: int, path: Path) -> int:
    value = spec.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError([FieldError(path, "must be a whole number >= 0", value=value, fix="write e.g. 2")])
    return value


def _pod_template(template: Mapping[str, Any], path: Path, notes: Notes) -> Object:
    """A PodTemplateSpec as a Phalanx pod template (metadata keeps only labels and annotations)."""
    out: Object = {}
    meta = template.get("metadata")
    if isinstance(meta, Mapping):
        kept = {k: deep(meta[k]) for k in ("labels", "annotations") if meta.get(k)}
        if kept:
            out["metadata"] = kept
        others = sorted(k for k in meta if k not in ("labels", "annotations") and meta[k])
        if others:
            notes.info(path, f"template metadata {', '.join(others)} dropped: Phalanx names every pod itself")
    out["spec"] = deep(dict(template.get("spec") or {}))
    return out


def _scheduler(templates: list[tuple[Object, Path]], notes: Notes) -> str:
    names = [(t["spec"].pop("schedulerName", None), path) for t, path in templates]
    chosen = next((name for name, _ in names if name), None)
    for name, path in names:
        if name and name != chosen:
            notes.lost(
                (*path, "spec"),
                f"schedulerName {name} differs from the leader's ({chosen}); every Phalanx pod of a group "
                "uses spec.schedulerName",
            )
    if chosen is None:
        notes.info(
            ("spec", "schedulerName"),
            "LeaderWorkerSet pods use the default scheduler, which places a group pod by pod; "
            "set volcano (or scheduler-plugins-scheduler) to start each group whole or not at all",
        )
    return chosen or DEFAULT_SCHEDULER


def _exclusive_affinity(topology_key: str) -> Object:
    """One role instance per topology domain, as LWS's exclusive placement: same group-key together,
    other group-keys kept out (matchLabelKeys/mismatchLabelKeys, Kubernetes 1.31+)."""
    selector = {"matchExpressions": [{"key": _GROUP_KEY, "operator": "Exists"}]}
    return {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": selector, "matchLabelKeys": [_GROUP_KEY], "topologyKey": topology_key}
            ]
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": deep(selector),
                    "mismatchLabelKeys": [_GROUP_KEY],
                    "topologyKey": topology_key,
                }
            ]
        },
    }


def _add_affinity(spec: Object, extra: Object) -> None:
    affinity = spec.setdefault("affinity", {})
    for kind, terms in extra.items():
        required = affinity.setdefault(kind, {}).setdefault(
            "requiredDuringSchedulingIgnoredDuringExecution", []
        )
        required.extend(terms["requiredDuringSchedulingIgnoredDuringExecution"])


def _claims_as_ephemeral(claims: list[Any], templates: list[Object], notes: Notes) -> None:
    for claim in claims:
        if not isinstance(claim, Mapping):
            continue
        name = (claim.get("metadata") or {}).get("name")
        if not name:
            continue
        volume = {"name": name, "ephemeral": {"volumeClaimTemplate": {"spec": deep(claim.get("spec") or {})}}}
        labels = (claim.get("metadata") or {}).get("labels")
        if labels:
            volume["ephemeral"]["volumeClaimTemplate"]["metadata"] = {"labels": deep(labels)}
        for template in templates:
            volumes = template["spec"].setdefault("volumes", [])
            if not any(isinstance(v, Mapping) and v.get("name") == name for v in volumes):
                volumes.append(deep(volume))
    notes.lost(
        (*_TEMPLATE, "entryTemplate", "spec", "volumes"),
        "volumeClaimTemplates became ephemeral volumes: a claim now lives as long as its pod, where "
        "LeaderWorkerSet's StatefulSet claims survive a group recreation",
    )


def _role_name(name: str, replicas: int, size: int, notes: Notes) -> str:
    """`default`, as Kthena's LWS integration names the role, unless the longest pod name it makes
    (surge groups included) would pass 63 characters; LWS allows names up to that."""
    longest = f"{name}-{max(2 * replicas - 1, 0)}-{ROLE}-0-{size - 1}"
    if len(longest) <= DNS_LABEL_MAX:
        return ROLE
    notes.info(
        _TEMPLATE,
        f"role named {SHORT_ROLE}, not {ROLE}: with {ROLE} the pod name {longest} would pass 63 characters",
    )
    return SHORT_ROLE


def _rollout(spec: Mapping[str, Any], notes: Notes) -> Object | None:
    strategy = spec.get("rolloutStrategy")
    if not isinstance(strategy, Mapping):
        return None
    out: Object = {"type": "ServingGroupRollingUpdate"}
    config = strategy.get("rollingUpdateConfiguration")
    if isinstance(config, Mapping):
        kept = {k: deep(config[k]) for k in ("maxUnavailable", "maxSurge", "partition") if k in config}
        if kept:
            out["rollingUpdateConfiguration"] = kept
    kind = strategy.get("type")
    if kind not in (None, "RollingUpdate"):
        notes.lost(
            ("spec", "rolloutStrategy"), f"rollout type {kind} has no equivalent; groups roll one by one"
        )
    return out


def convert(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    notes = Notes()
    spec = require_mapping(obj.get("spec"), ("spec",), "the LeaderWorkerSet spec")
    lwt = require_mapping(
        spec.get("leaderWorkerTemplate"), ("spec", "leaderWorkerTemplate"), "the group template"
    )
    size = _int(lwt, "size", 1, ("spec", "leaderWorkerTemplate", "size"))
    if size < 1:
        raise InputError(
            [
                FieldError(
                    ("spec", "leaderWorkerTemplate", "size"), "must be at least 1", value=size, fix="use 1+"
                )
            ]
        )
    lwt_path: Path = ("spec", "leaderWorkerTemplate")
    worker_source = lwt.get("workerTemplate")
    if worker_source is not None:
        source_pod_template(worker_source, (*lwt_path, "workerTemplate"), "the workers' pod template")
    if lwt.get("leaderTemplate") is not None:
        source_pod_template(lwt["leaderTemplate"], (*lwt_path, "leaderTemplate"), "the leader's pod template")
    leader_source = lwt.get("leaderTemplate") or worker_source
    if not isinstance(leader_source, Mapping):
        raise InputError(
            [
                FieldError(
                    ("spec", "leaderWorkerTemplate", "workerTemplate"),
                    "is required",
                    fix="add the pod template of the group's pods",
                )
            ]
        )
    if lwt.get("leaderTemplate") is None:
        notes.info((*_TEMPLATE, "entryTemplate"), "no leaderTemplate: the leader runs the workerTemplate")
    entry = _pod_template(leader_source, (*_TEMPLATE, "entryTemplate"), notes)
    templates: list[tuple[Object, Path]] = [(entry, (*_TEMPLATE, "entryTemplate"))]
    replicas = _int(spec, "replicas", 1, ("spec", "replicas"))
    role_name = _role_name(clean_metadata(obj)["name"], replicas, size, notes)
    role: Object = {"name": role_name, "replicas": 1, "entryTemplate": entry, "workerReplicas": size - 1}
    if size > 1:
        if not isinstance(worker_source, Mapping):
            raise InputError(
                [FieldError(("spec", "leaderWorkerTemplate", "workerTemplate"), "is required", fix="add it")]
            )
        worker = _pod_template(worker_source, (*_TEMPLATE, "workerTemplate"), notes)
        role["workerTemplate"] = worker
        templates.append((worker, (*_TEMPLATE, "workerTemplate")))

    metadata = clean_metadata(obj)
    annotations = metadata.get("annotations", {})
    out_spec: Object = {"replicas": replicas}
    out_spec["schedulerName"] = _scheduler(templates, notes)
    restart = lwt.get("restartPolicy") or "RecreateGroupOnPodRestart"
    if not isinstance(restart, str) or restart not in _RESTART:
        raise InputError(
            [
                FieldError(
                    ("spec", "leaderWorkerTemplate", "restartPolicy"),
                    "is not a LeaderWorkerSet restart policy",
                    value=restart,
                    fix="use RecreateGroupOnPodRestart, RecreateGroupAfterStart or None",
                )
            ]
        )
    out_spec["recoveryPolicy"] = _RESTART[restart]
    if restart == "RecreateGroupAfterStart":
        notes.lost(
            ("spec", "recoveryPolicy"),
            "RecreateGroupAfterStart recreates a group only once it has fully started; RoleRecreate also "
            "recreates a role instance whose pod fails while it starts",
        )
    rollout = _rollout(spec, notes)
    if rollout is not None:
        out_spec["rolloutStrategy"] = rollout
    out_spec["template"] = {"roles": [role]}

    startup = spec.get("startupPolicy")
    if startup not in (None, "LeaderCreated", "LeaderReady"):
        raise InputError(
            [
                FieldError(
                    ("spec", "startupPolicy"),
                    "is not a LeaderWorkerSet startup policy",
                    value=startup,
                    fix="use LeaderCreated or LeaderReady",
                )
            ]
        )
    if startup == "LeaderReady":
        notes.lost(
            (*_TEMPLATE, "workerTemplate"),
            "startupPolicy LeaderReady has no equivalent: Phalanx starts the workers with the entry pod "
            "(an init container that waits for $(LWS_LEADER_ADDRESS) gives the same order)",
        )
    network = optional_mapping(spec.get("networkConfig"), ("spec", "networkConfig"), "the network settings")
    subdomain = network.get("subdomainPolicy")
    if subdomain == "UniquePerReplica":
        notes.info(
            ("spec",),
            "subdomainPolicy UniquePerReplica dropped: Phalanx's pod DNS names are its own, and "
            "$(LWS_LEADER_ADDRESS) always names the group's leader",
        )
    if lwt.get("subGroupPolicy"):
        notes.lost(
            ("spec", "template"),
            "subGroupPolicy has no equivalent: sub-groups of a group are not placed or labelled apart",
        )
    topology = annotations.pop(_EXCLUSIVE, None)
    if topology:
        for template, _ in templates:
            _add_affinity(template["spec"], _exclusive_affinity(topology))
        notes.info(
            (*_TEMPLATE, "entryTemplate", "spec", "affinity"),
            f"exclusive-topology {topology}: one group per {topology} through pod (anti-)affinity on the "
            "group-key label with matchLabelKeys/mismatchLabelKeys (Kubernetes 1.31 or later)",
        )
    if annotations.pop(_SUBGROUP_EXCLUSIVE, None):
        notes.lost(("metadata", "annotations"), "subgroup-exclusive-topology has no equivalent")
    claims = optional_list(lwt.get("volumeClaimTemplates"), (*lwt_path, "volumeClaimTemplates"), "claims")
    for index, claim in enumerate(claims):
        claim_path: Path = (*lwt_path, "volumeClaimTemplates", index)
        checked = require_mapping(claim, claim_path, "a PersistentVolumeClaim template")
        meta = optional_mapping(checked.get("metadata"), (*claim_path, "metadata"), "the claim's metadata")
        string_map(meta.get("labels"), (*claim_path, "metadata", "labels"), "the claim's labels")
        optional_mapping(checked.get("spec"), (*claim_path, "spec"), "the claim's spec")
    if claims:
        _claims_as_ephemeral(claims, [t for t, _ in templates], notes)
    inherited = sorted(k for k in annotations if k.startswith("volcano.sh/"))
    if inherited:
        notes.lost(
            ("metadata", "annotations"),
            f"{', '.join(inherited)}: LeaderWorkerSet copies volcano.sh/ annotations onto its PodGroups; "
            "Phalanx's PodGroups do not carry them",
        )
    if not annotations:
        metadata.pop("annotations", None)
    for template, path in templates:
        note_undefined(notes, path, template["spec"])
    out: Object = {
        "apiVersion": GROUP_VERSION,
        "kind": "ModelServing",
        "metadata": metadata,
        "spec": out_spec,
    }
    return Converted(source_name(obj), document, out, tuple(notes.items))
