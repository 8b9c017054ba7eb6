"""AIBrix's RayClusterFleet and RayClusterReplicaSet (`orchestration.aibrix.ai`) and KubeRay's
RayCluster (`ray.io`) as a Phalanx ModelServing.

A fleet (a Deployment of Ray clusters) or replica set runs `replicas` Ray clusters from one RayCluster
template; a RayCluster is one. One Ray cluster is one ServingGroup with one role, `ray`: the head is
the entry pod and the worker group's pods are the workers (`replicas` clamped to
[`minReplicas`, `maxReplicas`] as KubeRay does, times `numOfHosts`). The pod templates are rebuilt as
KubeRay builds the pods (`importers.kuberay`: `ray start` commands, env, `/dev/shm`, probes), with the
head reached at `$(ENTRY_ADDRESS)`; fleets and replica sets follow KubeRay as AIBrix installs it, a
RayCluster KubeRay's defaults. Decisions:
- Several worker groups that run pods are an input error: a role has one worker template, and a role
  per worker group would make its first pod an entry pod, which the client Service and the router
  send requests to, though a Ray worker serves none. Worker groups with no pods are left out.
- Ray's in-tree autoscaler is not emulated (lost): each group runs the clamped `replicas` workers.
- `suspend: true` runs no pods: `replicas: 0`.
- Fleet `strategy`: RollingUpdate -> ServingGroupRollingUpdate with the same maxSurge/maxUnavailable
  (AIBrix defaults a missing one to 0 and uses maxUnavailable 1 when both resolve to 0); Recreate ->
  maxUnavailable 100% (lost: groups are not all gone before the first new one starts). A strategy the
  fleet controller cannot act on (no type, or RollingUpdate without maxSurge) never created a cluster
  there (lost). A replica set or a RayCluster never replaces running pods when its template changes;
  Phalanx rolls them (info). `selector`, `revisionHistoryLimit`, `progressDeadlineSeconds` are dropped;
  `minReadySeconds` and `paused` are lost.
- Failed pods are replaced one by one, as KubeRay does: `recoveryPolicy: None`.
- Labels: pod templates keep theirs (AIBrix's `model.aibrix.ai/*` included) plus the fleet's
  `orchestration.aibrix.ai/raycluster-fleet-name`; labels and annotations of the RayCluster objects of a
  fleet are dropped (KubeRay does not copy them onto pods). `headServiceAnnotations`, `serviceType`,
  `headService` and `enableIngress` shape KubeRay's head Service, which is not created (lost).
  `rayVersion` only matters to KubeRay for RayJobs (dropped).
- Gangs: KubeRay gangs a cluster with Volcano when its RayCluster is labelled
  `ray.io/scheduler-name: volcano` (and the operator runs with batch scheduling): schedulerName volcano,
  the `volcano.sh/queue-name` label becomes the queue annotation. Otherwise the pods' own
  schedulerName, else the default scheduler, without a gang, as the source placed them.
- Routing: the router sends requests to the entry pod's port named `http`, else its first port; the
  head's serving port (named serve/service, or 8000) is moved first in its container. An entry pod
  without readiness or startup probe is routed to as soon as it runs: a note says so.
- Fields KubeRay v1.2.1 does not have: a RayCluster's are lost (a later KubeRay acted on them); in a
  fleet or replica set they are dropped, as AIBrix's CRD (v1.2.1's schema) prunes them.
An AIBrix PodAutoscaler in the same file is pointed at the ModelServing (`importers.__init__`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phalanx.api import labels as L
from phalanx.api.base import scaled_value
from phalanx.api.errors import FieldError, Path
from phalanx.importers import kuberay
from phalanx.importers.base import (
    Context,
    Converted,
    InputError,
    Notes,
    Object,
    clean_metadata,
    note_undefined,
    optional_mapping,
    require_mapping,
    source_name,
    string_map,
    without_nulls,
)
from phalanx.importers.kuberay import HEAD_GROUP, Operator, RayNode
from phalanx.importers.lws import DEFAULT_SCHEDULER

GROUP = "orchestration.aibrix.ai"
RAY_GROUP = "ray.io"
ROLE = "ray"
FLEET_LABEL = "orchestration.aibrix.ai/raycluster-fleet-name"
SCHEDULER_LABEL = "ray.io/scheduler-name"
QUEUE_LABEL = "volcano.sh/queue-name"
PRIORITY_LABEL = "ray.io/priority-class-name"
FT_ANNOTATION = "ray.io/ft-enabled"
_MAX_REPLICAS = 2147483647
_ROLE: Path = ("spec", "template", "roles", 0)
_ENTRY: Path = (*_ROLE, "entryTemplate")
_WORKER: Path = (*_ROLE, "workerTemplate")
_SERVING_PORT_NAMES = ("serve", "service")
_SPEC_KEYS = {
    "suspend",
    "autoscalerOptions",
    "headServiceAnnotations",
    "enableInTreeAutoscaling",
    "headGroupSpec",
    "rayVersion",
    "workerGroupSpecs",
}
_HEAD_KEYS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
_WORKER_KEYS = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "numOfHosts",
}


@dataclass(frozen=True)
class _Cluster:
    """A RayClusterSpec, where it is in the input, and the RayCluster object's metadata."""

    spec: Mapping[str, Any]
    at: Path
    labels: Mapping[str, Any]
    annotations: Mapping[str, Any]
    operator: Operator
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pruned: bool = False  # AIBrix's CRD embeds KubeRay v1.2.1's schema: the API server drops other fields


@dataclass(frozen=True)
class _Workers:
    group: Mapping[str, Any]
    replicas: int  # replicas within [minReplicas, maxReplicas]
    hosts: int  # numOfHosts: pods per replica

    @property
    def pods(self) -> int:
        return self.replicas * self.hosts


@dataclass
class _Built:
    role: Object
    scheduler: str
    suspended: bool
    annotations: dict[str, str] = field(default_factory=dict)  # for the ModelServing
    consumed: set[str] = field(default_factory=set)  # RayCluster label/annotation keys used up


def _count(value: Any, at: Path, default: int, problems: list[FieldError]) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        problems.append(FieldError(at, "must be a whole number >= 0", value=value, fix="write e.g. 1"))
        return default
    return value


def _params(value: Any, at: Path, problems: list[FieldError]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(
            FieldError(at, "must be a mapping", value=value, fix="write e.g. {dashboard-host: '0.0.0.0'}")
        )
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str):
            out[str(key)] = item
            continue
        text = str(item).lower() if isinstance(item, bool) else str(item)
        problems.append(
            FieldError(
                (*at, str(key)),
                "must be a string: the RayCluster CRD types every rayStartParams value as one",
                value=item,
                fix=f"quote it: '{text}'",
            )
        )
    return out


def _shape(value: Any, at: Path, kind: type, what: str, problems: list[FieldError]) -> None:
    """A field the import reads must have its Kubernetes type (the schema check comes after)."""
    if value is not None and not isinstance(value, kind):
        name = "a mapping" if kind is Mapping else "a list"
        problems.append(FieldError(at, f"must be {name}", value=value, fix=f"write {what} as {name}"))


def _container_shapes(container: Mapping[str, Any], at: Path, problems: list[FieldError]) -> None:
    for key in ("command", "args", "env", "ports", "volumeMounts"):
        _shape(container.get(key), (*at, key), list, key, problems)
    for key in ("env", "ports", "volumeMounts"):
        items = container.get(key)
        for index, item in enumerate(items if isinstance(items, list) else []):
            if item is None:
                problems.append(
                    FieldError((*at, key, index), "must be a mapping", fix=f"remove the empty {key} entry")
                )
            _shape(item, (*at, key, index), Mapping, f"each {key} entry", problems)
    resources = container.get("resources")
    _shape(resources, (*at, "resources"), Mapping, "resources", problems)
    for key in ("limits", "requests"):
        if isinstance(resources, Mapping):
            _shape(resources.get(key), (*at, "resources", key), Mapping, key, problems)


def _template(value: Any, at: Path, what: str, problems: list[FieldError]) -> None:
    """A pod template with the Ray container first, in the shape the import reads."""
    if not isinstance(value, Mapping):
        problems.append(FieldError(at, "is required", fix=f"add the {what} pod template"))
        return
    meta = value.get("metadata")
    _shape(meta, (*at, "metadata"), Mapping, "metadata", problems)
    for key in ("labels", "annotations"):
        if isinstance(meta, Mapping):
            _shape(meta.get(key), (*at, "metadata", key), Mapping, key, problems)
    raw = value.get("spec")
    spec: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], Mapping):
        problems.append(
            FieldError(
                (*at, "spec", "containers"),
                "needs at least one container: KubeRay runs Ray in the first one",
                fix="add the Ray container",
            )
        )
        return
    _container_shapes(containers[0], (*at, "spec", "containers", 0), problems)
    _shape(spec.get("volumes"), (*at, "spec", "volumes"), list, "volumes", problems)
    inits = spec.get("initContainers")
    _shape(inits, (*at, "spec", "initContainers"), list, "initContainers", problems)
    for index, init in enumerate(inits if isinstance(inits, list) else []):
        where: Path = (*at, "spec", "initContainers", index)
        _shape(init, where, Mapping, "each init container", problems)
        if isinstance(init, Mapping):
            _shape(init.get("env"), (*where, "env"), list, "env", problems)


def _workers(group: Mapping[str, Any], at: Path, problems: list[FieldError]) -> _Workers:
    """A worker group's pods: replicas within [minReplicas, maxReplicas] (KubeRay's rule) x numOfHosts."""
    replicas = _count(group.get("replicas"), (*at, "replicas"), 0, problems)
    low = _count(group.get("minReplicas"), (*at, "minReplicas"), 0, problems)
    high = _count(group.get("maxReplicas"), (*at, "maxReplicas"), _MAX_REPLICAS, problems)
    hosts = _count(group.get("numOfHosts"), (*at, "numOfHosts"), 1, problems)
    desired = high if low > high else min(max(replicas, low), high)
    return _Workers(group, desired, max(hosts, 1))


def _worker_groups(cluster: _Cluster, problems: list[FieldError], notes: Notes) -> _Workers | None:
    raw = cluster.spec.get("workerGroupSpecs")
    at: Path = (*cluster.at, "workerGroupSpecs")
    if raw is None:
        return None
    if not isinstance(raw, list):
        problems.append(FieldError(at, "must be a list of worker groups", value=raw, fix="write a list"))
        return None
    groups: list[_Workers] = []
    for index, group in enumerate(raw):
        where: Path = (*at, index)
        if not isinstance(group, Mapping):
            problems.append(FieldError(where, "must be a worker group", value=group, fix="write a mapping"))
            continue
        if not isinstance(group.get("groupName"), str) or not group["groupName"]:
            problems.append(FieldError((*where, "groupName"), "is required", fix="name the worker group"))
        _template(group.get("template"), (*where, "template"), "worker", problems)
        _params(group.get("rayStartParams"), (*where, "rayStartParams"), problems)
        groups.append(_workers(group, where, problems))
    running = [g for g in groups if g.pods > 0]
    if len(running) > 1:
        names = ", ".join(str(g.group.get("groupName")) for g in running)
        problems.append(
            FieldError(
                at,
                f"has {len(running)} worker groups that run pods ({names}); a Phalanx role instance has one "
                "worker template (a role per group would make Ray workers entry pods, which get requests)",
                fix="merge them into one worker group, or set replicas, minReplicas and maxReplicas of all "
                "but one to 0",
            )
        )
        return None
    for group in groups:
        if group not in running:
            notes.info(_ROLE, f"worker group {group.group.get('groupName')} runs no pods and is left out")
    return running[0] if running else None


def _check_known(cluster: _Cluster, notes: Notes) -> None:
    """Fields the emulated KubeRay release does not have (later releases added them)."""
    sections: list[tuple[Any, set[str], str]] = [(cluster.spec, _SPEC_KEYS, "")]
    sections.append((cluster.spec.get("headGroupSpec"), _HEAD_KEYS, "headGroupSpec."))
    for index, group in enumerate(cluster.spec.get("workerGroupSpecs") or []):
        sections.append((group, _WORKER_KEYS, f"workerGroupSpecs[{index}]."))
    unknown = [
        f"{prefix}{key}"
        for section, known, prefix in sections
        if isinstance(section, Mapping)
        for key in sorted(set(section) - known)
    ]
    if not unknown:
        return
    fields = ", ".join(unknown)
    if cluster.pruned:
        notes.info(
            _ROLE,
            f"{fields} dropped: AIBrix's CRD has KubeRay {kuberay.VERSION}'s RayCluster schema, which has "
            "no such field, so the API server drops it there too",
        )
    else:
        notes.lost(
            _ROLE,
            f"{fields} not imported: the pods are built as KubeRay {kuberay.VERSION} builds them, and it "
            "has no such field",
        )


def _service_notes(cluster: _Cluster, notes: Notes) -> None:
    head = cluster.spec.get("headGroupSpec") or {}
    lost = []
    if cluster.spec.get("headServiceAnnotations"):
        lost.append(f"headServiceAnnotations ({', '.join(sorted(cluster.spec['headServiceAnnotations']))})")
    if head.get("serviceType") not in (None, "ClusterIP"):
        lost.append(f"serviceType {head['serviceType']}")
    if head.get("headService"):
        lost.append("headService")
    if head.get("enableIngress"):
        lost.append("enableIngress")
    if lost:
        notes.lost(
            ("spec",),
            f"{', '.join(lost)} shaped KubeRay's head Service, which Phalanx does not create: Phalanx's "
            "Service of the same name as the ModelServing (ClusterIP, every group's head) and the router "
            "take its place; add your own Service or Ingress for anything more",
        )


def _scaling_notes(cluster: _Cluster, workers: _Workers | None, notes: Notes) -> None:
    autoscaling = cluster.spec.get("enableInTreeAutoscaling") is True
    if autoscaling:
        notes.lost(
            (*_ROLE, "workerReplicas"),
            "enableInTreeAutoscaling: Ray's autoscaler (KubeRay's sidecar in the head) is not emulated; "
            "each group keeps this many workers, whatever minReplicas and maxReplicas allow. Scale "
            "ServingGroups instead (spec.replicas, or an autoscaler on the ModelServing)",
        )
    elif cluster.spec.get("autoscalerOptions"):
        notes.info(
            ("spec",), "autoscalerOptions dropped: they have no effect without enableInTreeAutoscaling"
        )
    if workers is None:
        return
    name = workers.group.get("groupName")
    if workers.hosts > 1:
        notes.lost(
            (*_ROLE, "workerReplicas"),
            f"worker group {name}: numOfHosts {workers.hosts}: every host of a replica is a worker pod, but "
            "KubeRay's headless Service for multi-host worker groups is not created",
        )
    written = workers.group.get("replicas", 0)
    if written != workers.replicas:
        notes.info(
            (*_ROLE, "workerReplicas"),
            f"worker group {name}: replicas {written} is outside [minReplicas, maxReplicas]; KubeRay runs "
            f"{workers.replicas}, as here",
        )


def _serving_port(entry: Object, notes: Notes) -> None:
    """Put the head's serving port first: the router uses the port named http, else the first one."""
    containers = entry["spec"]["containers"]
    if any(
        p.get("name") == "http" for c in containers for p in c.get("ports") or [] if isinstance(p, Mapping)
    ):
        return
    ports: list[Any] = containers[0]["ports"]
    serving = [
        index
        for index, port in enumerate(ports)
        if isinstance(port, Mapping)
        and (port.get("name") in _SERVING_PORT_NAMES or port.get("containerPort") == 8000)
    ]
    path: Path = (*_ENTRY, "spec", "containers", 0, "ports")
    if serving and serving[0] > 0:
        port = ports.pop(serving[0])
        ports.insert(0, port)
        notes.info(
            path,
            f"port {port.get('name') or port.get('containerPort')} moved first: Phalanx's router sends "
            "requests to the entry pod's port named http, else its first port",
        )
    elif not serving:
        first = ports[0]
        notes.info(
            path,
            f"no serving port (named http, serve or service, or 8000): Phalanx's router would send "
            f"requests to {first.get('name') or 'port'} {first.get('containerPort')}; declare the "
            "engine's port and name it http",
        )


def _readiness_note(entry: Object, injected: bool, notes: Notes) -> None:
    containers = entry["spec"]["containers"]
    path: Path = (*_ENTRY, "spec", "containers", 0)
    if injected:
        notes.info(
            (*path, "readinessProbe"),
            "readiness and liveness probes as KubeRay injects them: they check Ray (raylet and GCS), not "
            "the engine, so the router may send requests before the engine serves",
        )
    elif not any(c.get("readinessProbe") or c.get("startupProbe") for c in containers):
        notes.info(
            path,
            "the head has no readiness probe (nor does it under KubeRay here): the router sends it "
            "requests as soon as it runs; add a readinessProbe on the engine's port (e.g. httpGet /health "
            "on 8000) so requests wait for the engine",
        )


def _pop_scheduler_names(templates: list[tuple[Object, Path]]) -> list[tuple[str | None, Path]]:
    """Each template's own schedulerName (None: the default), taken out: spec.schedulerName sets it."""
    names: list[tuple[str | None, Path]] = []
    for template, path in templates:
        name = template["spec"].pop("schedulerName", None)
        names.append((name if isinstance(name, str) and name else None, path))
    return names


def _scheduler(cluster: _Cluster, templates: list[tuple[Object, Path]], built: _Built, notes: Notes) -> str:
    names = _pop_scheduler_names(templates)
    batch = cluster.labels.get(SCHEDULER_LABEL)
    path: Path = ("spec", "schedulerName")
    if batch == "volcano":
        built.consumed.add(SCHEDULER_LABEL)
        notes.info(
            path,
            "ray.io/scheduler-name volcano: KubeRay gangs a Ray cluster with Volcano when its operator runs "
            "with batch scheduling; Phalanx gives every group a Volcano PodGroup of all its pods",
        )
        queue = cluster.labels.get(QUEUE_LABEL)
        if queue:
            built.consumed.add(QUEUE_LABEL)
            built.annotations[L.VOLCANO_QUEUE_ANNOTATION] = str(queue)
        priority = cluster.labels.get(PRIORITY_LABEL)
        if priority:
            built.consumed.add(PRIORITY_LABEL)
            for template, _ in templates:
                template["spec"].setdefault("priorityClassName", str(priority))
        return "volcano"
    if batch:
        notes.lost(
            path,
            f"ray.io/scheduler-name {batch}: Phalanx gangs groups with Volcano or the coscheduling plugin "
            "only; the pods keep the scheduler below, without a gang",
        )
    chosen = names[0][0] or DEFAULT_SCHEDULER  # the head's
    for name, where in names[1:]:
        if (name or DEFAULT_SCHEDULER) != chosen:
            notes.lost(
                (*where, "spec"),
                f"schedulerName {name or DEFAULT_SCHEDULER} differs from the head's ({chosen}); every "
                "Phalanx pod of a group uses spec.schedulerName",
            )
    if chosen == "volcano":
        notes.info(
            path,
            "the pods ask for Volcano without KubeRay's batch scheduling, which placed them one by one; "
            "Phalanx gives every group a Volcano PodGroup of all its pods",
        )
    elif chosen == DEFAULT_SCHEDULER:
        notes.info(
            path,
            "KubeRay's pods use the default scheduler, which places a Ray cluster pod by pod; label the "
            "RayCluster ray.io/scheduler-name: volcano (or set volcano here) to start each group whole",
        )
    return chosen


def _node(kind: kuberay.NodeType, group: str, spec: Mapping[str, Any]) -> RayNode:
    params = {str(k): v for k, v in (spec.get("rayStartParams") or {}).items()}
    return RayNode(kind, group, params, spec["template"])


def _pods(cluster: _Cluster, node: RayNode, port: str) -> Object:
    return kuberay.pod_template(
        node,
        port=port,
        operator=cluster.operator,
        overwrite_command=kuberay.overwrites_command(cluster.annotations, node.template),
        extra_labels=cluster.pod_labels,
    )


def _check(cluster: _Cluster, problems: list[FieldError], notes: Notes) -> _Workers | None:
    head_at: Path = (*cluster.at, "headGroupSpec")
    head = cluster.spec.get("headGroupSpec")
    if not isinstance(head, Mapping):
        problems.append(
            FieldError(head_at, "is required", fix="add the head group (rayStartParams, template)")
        )
    else:
        _template(head.get("template"), (*head_at, "template"), "head", problems)
        _params(head.get("rayStartParams"), (*head_at, "rayStartParams"), problems)
    return _worker_groups(cluster, problems, notes)


def _build(cluster: _Cluster, notes: Notes) -> _Built:
    """The role of one Ray cluster and what it sets on the ModelServing; raises InputError."""
    problems: list[FieldError] = []
    workers = _check(cluster, problems, notes)
    if problems:
        raise InputError(problems)
    head = _node("head", HEAD_GROUP, cluster.spec["headGroupSpec"])
    port = kuberay.head_port(head.params)
    entry = _pods(cluster, head, port)
    role: Object = {"name": ROLE, "replicas": 1, "entryTemplate": entry, "workerReplicas": 0}
    templates: list[tuple[Object, Path]] = [(entry, _ENTRY)]
    _template_metadata_notes(head.template, _ENTRY, notes)
    if workers is not None:
        worker = _pods(cluster, _node("worker", str(workers.group["groupName"]), workers.group), port)
        role["workerReplicas"] = workers.pods
        role["workerTemplate"] = worker
        templates.append((worker, _WORKER))
        _template_metadata_notes(workers.group["template"], _WORKER, notes)
    _block_note(cluster, [head.params, (workers.group.get("rayStartParams") or {}) if workers else {}], notes)
    _serving_port(entry, notes)
    injected = (
        cluster.operator.inject_probes
        and head.template["spec"]["containers"][0].get("readinessProbe") is None
    )
    _readiness_note(entry, injected, notes)
    built = _Built(role, "", suspended=cluster.spec.get("suspend") is True)
    built.scheduler = _scheduler(cluster, templates, built, notes)
    for template, path in templates:
        note_undefined(notes, path, template["spec"])
    _check_known(cluster, notes)
    _service_notes(cluster, notes)
    _scaling_notes(cluster, workers, notes)
    _cluster_notes(cluster, built, notes)
    return built


def _block_note(cluster: _Cluster, params: list[Mapping[str, Any]], notes: Notes) -> None:
    if cluster.operator.honour_block or not any(str(p.get("block")).lower() == "false" for p in params):
        return
    notes.info(
        _ROLE,
        "rayStartParams block: 'false' has no effect: KubeRay forces --block (AIBrix's build of KubeRay "
        "honours it; if the cluster ran there, take --block out of the commands)",
    )


def _template_metadata_notes(template: Mapping[str, Any], path: Path, notes: Notes) -> None:
    meta = template.get("metadata") or {}
    others = sorted(k for k in meta if k not in ("labels", "annotations") and meta[k])
    if others:
        notes.info(path, f"template metadata {', '.join(others)} dropped: Phalanx names every pod itself")


def _cluster_notes(cluster: _Cluster, built: _Built, notes: Notes) -> None:
    notes.info(
        _ROLE,
        f"pods as built by {cluster.operator.description}: ray start from rayStartParams and the Ray "
        "container's resources, KUBERAY_GEN_RAY_START_CMD and the rest of KubeRay's env, /dev/shm, the "
        "metrics port; the head is at $(ENTRY_ADDRESS)",
    )
    notes.info(
        ("spec", "recoveryPolicy"),
        "None: KubeRay replaces a failed Ray pod alone; RoleRecreate restarts the whole Ray cluster, "
        "which an engine spread over it usually needs",
    )
    if built.suspended:
        notes.info(
            ("spec", "replicas"), "suspend: a suspended Ray cluster runs no pods; raise replicas to resume"
        )
    version = cluster.spec.get("rayVersion")
    if version:
        notes.info(
            _ROLE,
            f"rayVersion {version} dropped: KubeRay reads it only for RayJobs; the image decides the version",
        )
    if str(cluster.annotations.get(FT_ANNOTATION, "")).lower() == "true":
        built.consumed.add(FT_ANNOTATION)
        notes.lost(
            ("spec",),
            "ray.io/ft-enabled: GCS fault tolerance (KubeRay's Redis settings and cleanup) is not emulated",
        )
    built.consumed.add(kuberay.OVERWRITE_COMMAND)


def _serving(metadata: Object, replicas: int, built: _Built, rollout: Object | None) -> Object:
    annotations = {**metadata.get("annotations", {}), **built.annotations}
    if annotations:
        metadata["annotations"] = annotations
    spec: Object = {
        "replicas": 0 if built.suspended else replicas,
        "schedulerName": built.scheduler,
        "recoveryPolicy": "None",
    }
    if rollout is not None:
        spec["rolloutStrategy"] = rollout
    spec["template"] = {"roles": [built.role]}
    return {"apiVersion": L.GROUP_VERSION, "kind": "ModelServing", "metadata": metadata, "spec": spec}


def _never_rolled(kind: str, notes: Notes) -> None:
    notes.info(
        ("spec", "rolloutStrategy"),
        f"a {kind} leaves running Ray pods on their old template when the template changes; Phalanx "
        "rolls groups to a changed template one at a time",
    )


def _mentions(value: Any, text: str) -> bool:
    if isinstance(value, str):
        return text in value
    if isinstance(value, Mapping):
        return any(_mentions(item, text) for item in value.values())
    if isinstance(value, list):
        return any(_mentions(item, text) for item in value)
    return False


def convert_ray_cluster(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    notes = Notes()
    spec = without_nulls(require_mapping(obj.get("spec"), ("spec",), "the RayCluster spec"))
    metadata = clean_metadata(obj)
    labels = dict(metadata.get("labels", {}))
    annotations = dict(metadata.get("annotations", {}))
    built = _build(_Cluster(spec, ("spec",), labels, annotations, kuberay.UPSTREAM), notes)
    for key in ("labels", "annotations"):
        kept = {k: v for k, v in metadata.get(key, {}).items() if k not in built.consumed}
        metadata.pop(key, None)
        if kept:
            metadata[key] = kept
    service = f"{metadata['name']}-head-svc"
    notes.info(
        (),
        f"KubeRay's Service {service} is not created: the Service {metadata['name']} (every group's head) "
        "or Phalanx's router reaches the head",
    )
    for template, path in (
        (built.role["entryTemplate"], _ENTRY),
        (built.role.get("workerTemplate"), _WORKER),
    ):
        if template is not None and _mentions(template["spec"], service):
            notes.lost(path, f"refers to {service}, which does not exist here; use $(ENTRY_ADDRESS)")
    _never_rolled("RayCluster", notes)
    out = _serving(metadata, 1, built, None)
    return Converted(source_name(obj), document, out, tuple(notes.items))


def _fleet_rollout(spec: Mapping[str, Any], replicas: int, notes: Notes) -> Object | None:
    """The fleet's Deployment-like strategy as AIBrix's fleet controller applies it."""
    raw = spec.get("strategy")
    strategy: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate") if isinstance(strategy.get("rollingUpdate"), Mapping) else None
    path: Path = ("spec", "rolloutStrategy")
    if kind == "Recreate":
        notes.lost(
            path,
            "Recreate removes every old Ray cluster before the first new one starts; here every group is "
            "replaced at once (maxUnavailable 100%), each as soon as its own old pods are gone",
        )
        config: Object = {"maxUnavailable": "100%", "maxSurge": 0}
        return {"type": "ServingGroupRollingUpdate", "rollingUpdateConfiguration": config}
    if kind != "RollingUpdate" or rolling is None or rolling.get("maxSurge") is None:
        notes.lost(
            path,
            f"strategy {dict(strategy) or 'unset'}: AIBrix's fleet controller creates Ray clusters only for "
            "type Recreate, or RollingUpdate with rollingUpdate.maxSurge set, so as written this fleet never "
            "ran; here groups roll one at a time (maxUnavailable 1)",
        )
        return None
    surge = rolling["maxSurge"]
    unavailable = rolling.get("maxUnavailable", 0)
    for key, value in (("maxSurge", surge), ("maxUnavailable", unavailable)):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InputError(
                [
                    FieldError(
                        ("spec", "strategy", "rollingUpdate", key),
                        "must be a whole number or a percentage",
                        value=value,
                        fix="write e.g. 1 or '25%'",
                    )
                ]
            )
    try:
        both_zero = (
            scaled_value(surge, replicas, round_up=True) == 0
            and scaled_value(unavailable, replicas, round_up=False) == 0
        )
    except ValueError:  # not a number or a percentage: `phalanx validate` names it
        both_zero = False
    if both_zero:
        notes.info(
            path,
            f"maxSurge {surge!r} and maxUnavailable {unavailable!r} both come to 0 at {replicas} replicas, "
            "so AIBrix replaces one cluster at a time: maxUnavailable 1",
        )
        unavailable = 1
    config = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"type": "ServingGroupRollingUpdate", "rollingUpdateConfiguration": config}


def _set_notes(spec: Mapping[str, Any], notes: Notes) -> None:
    """Fields of a fleet or replica set beyond replicas, template and strategy."""
    if spec.get("selector"):
        notes.info(("spec",), "selector dropped: Phalanx finds its pods by its own labels")
    ready = spec.get("minReadySeconds")
    if ready:
        notes.lost(("spec",), f"minReadySeconds {ready}: a group counts as available as soon as it is ready")
    if spec.get("revisionHistoryLimit") is not None:
        notes.info(("spec",), "revisionHistoryLimit dropped: to roll back, apply the older spec again")
    if spec.get("progressDeadlineSeconds") is not None:
        notes.info(("spec",), "progressDeadlineSeconds dropped: it only set a status condition")
    if spec.get("paused"):
        notes.lost(
            ("spec", "rolloutStrategy"),
            "paused: Phalanx has no pause; rollingUpdateConfiguration.partition set to replicas keeps "
            "every group at the revision it runs",
        )


def _cluster_template_notes(template: Mapping[str, Any], built: _Built, notes: Notes) -> None:
    meta = template.get("metadata") if isinstance(template.get("metadata"), Mapping) else {}
    for key in ("labels", "annotations"):
        left = sorted(k for k in (meta or {}).get(key) or {} if k not in built.consumed)
        if left:
            notes.info(
                ("metadata",),
                f"template {key} {', '.join(left)} dropped: they were on each RayCluster object, and a "
                "ServingGroup is no object of its own (KubeRay does not copy them onto pods)",
            )


def _convert_set(obj: Mapping[str, Any], document: int, kind: str, *, fleet: bool) -> Converted:
    notes = Notes()
    spec = require_mapping(obj.get("spec"), ("spec",), f"the {kind} spec")
    template = require_mapping(spec.get("template"), ("spec", "template"), "the RayCluster template")
    at: Path = ("spec", "template", "spec")
    cluster_spec = without_nulls(require_mapping(template.get("spec"), at, "the RayCluster spec"))
    metadata = clean_metadata(obj)
    problems: list[FieldError] = []
    replicas = _count(spec.get("replicas"), ("spec", "replicas"), 1, problems)
    if problems:
        raise InputError(problems)
    meta = optional_mapping(
        template.get("metadata"), ("spec", "template", "metadata"), "the cluster's metadata"
    )
    labels = string_map(meta.get("labels"), ("spec", "template", "metadata", "labels"), "labels")
    annotations = string_map(
        meta.get("annotations"), ("spec", "template", "metadata", "annotations"), "annotations"
    )
    pod_labels = {FLEET_LABEL: metadata["name"]} if fleet else {}
    cluster = _Cluster(cluster_spec, at, labels, annotations, kuberay.AIBRIX, pod_labels, pruned=True)
    built = _build(cluster, notes)
    _cluster_template_notes(template, built, notes)
    _set_notes(spec, notes)
    if fleet:
        rollout = _fleet_rollout(spec, replicas, notes)
    else:
        rollout = None
        _never_rolled(kind, notes)
    out = _serving(metadata, replicas, built, rollout)
    return Converted(source_name(obj), document, out, tuple(notes.items))


def convert_fleet(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    return _convert_set(obj, document, "RayClusterFleet", fleet=True)


def convert_replica_set(obj: Mapping[str, Any], document: int, context: Context) -> Converted:
    return _convert_set(obj, document, "RayClusterReplicaSet", fleet=False)
