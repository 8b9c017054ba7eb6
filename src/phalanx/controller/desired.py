"""Desired state as data: the exact Kubernetes objects a ModelServing's steady state consists of.

Pure functions only. The controller compares these objects with what a runtime reports; `render`
prints them. A group is always built from one ModelServing value: pass the current spec for
updated groups, or the spec of an older revision for groups a partition keeps back.
"""

from __future__ import annotations

import copy
from typing import Any

from phalanx.api import labels as L
from phalanx.api.disaggregation import PD_POD_ANNOTATIONS, PD_POD_LABELS, pair_key
from phalanx.api.modelserving import ModelServing, PodTemplate, Role
from phalanx.api.names import (
    entry_address,
    entry_service_name,
    group_name,
    pod_name,
    subdomain_service_name,
)
from phalanx.api.quantity import add_resources, pod_requests
from phalanx.controller.identity import (
    compat_pod_annotations,
    compat_pod_labels,
    dns_identity,
    kthena_group_labels,
    kthena_instance_labels,
    kthena_role_labels,
    lws_env,
)
from phalanx.controller.memo import per_object
from phalanx.controller.ownership import controlled_by
from phalanx.controller.revision import group_revision, pd_of, role_revision

DEFAULT_SCHEDULE_TIMEOUT_SECONDS = 600

Object = dict[str, Any]


def _metadata(
    ms: ModelServing, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> Object:
    meta: Object = {"name": name, "namespace": ms.namespace, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    owners = controlled_by("ModelServing", ms.name, ms.metadata.uid)
    if owners:
        meta["ownerReferences"] = owners
    return meta


def group_labels(ms: ModelServing, group_index: int) -> dict[str, str]:
    return {L.NAME: ms.name, L.GROUP_INDEX: str(group_index)}


def role_instance_labels(ms: ModelServing, group_index: int, role: Role, role_index: int) -> dict[str, str]:
    return {**group_labels(ms, group_index), L.ROLE: role.name, L.ROLE_INDEX: str(role_index)}


def injected_env(
    ms: ModelServing, group_index: int, role: Role, role_index: int, pod_index: int
) -> list[Object]:
    values = {
        L.ENV_ENTRY_ADDRESS: entry_address(ms.name, group_index, role.name, role_index, ms.namespace),
        L.ENV_WORKER_INDEX: str(pod_index),
        L.ENV_GROUP_SIZE: str(role.group_size),
        L.ENV_GROUP_INDEX: str(group_index),
        L.ENV_ROLE_NAME: role.name,
        L.ENV_ROLE_INDEX: str(role_index),
        L.ENV_MODEL_SERVING: ms.name,
        **lws_env(ms, group_index, role, role_index, pod_index),
    }
    return [{"name": name, "value": value} for name, value in values.items()]


def _with_env(containers: list[Object], env: list[Object]) -> list[Object]:
    """Injected variables go first so user variables can refer to them with $(NAME)."""
    injected = {item["name"] for item in env}
    out = []
    for original in containers:
        container = dict(original)
        own = [item for item in container.get("env") or [] if item.get("name") not in injected]
        container["env"] = [*copy.deepcopy(env), *own]
        out.append(container)
    return out


def pd_metadata(ms: ModelServing, group_index: int, role: Role) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) that tell the router a pod's PD side, pairing and handover protocol;
    none for a role served aggregated. On every pod of the role, workers included."""
    pd = pd_of(role)
    if pd is None:
        return {}, {}
    labels = {L.PD_ROLE: pd.kind, L.PD_PAIR_KEY: pair_key(ms, group_index)}
    annotations: dict[str, str] = {L.PD_PROTOCOL_ANNOTATION: pd.protocol}
    if pd.bootstrap_port is not None:
        annotations[L.PD_BOOTSTRAP_PORT_ANNOTATION] = str(pd.bootstrap_port)
    return labels, annotations


def pod_template_for(role: Role, pod_index: int) -> PodTemplate:
    if pod_index == 0:
        return role.entry_template
    if role.worker_template is None:
        raise ValueError(f"role {role.name!r} has no workerTemplate for worker pod {pod_index}")
    return role.worker_template


def pod(ms: ModelServing, group_index: int, role: Role, role_index: int, pod_index: int) -> Object:
    template = pod_template_for(role, pod_index)
    user_labels = dict(template.metadata.labels) if template.metadata else {}
    user_annotations = dict(template.metadata.annotations) if template.metadata else {}
    revisions = (group_revision(ms), role_revision(ms, role))
    # The compatibility set yields to the template (as on Kthena); our own labels do not.
    labels = {
        **compat_pod_labels(ms, group_index, role, role_index, pod_index, revisions),
        **user_labels,
        **role_instance_labels(ms, group_index, role, role_index),
        L.POD_INDEX: str(pod_index),
        L.ENTRY: "true" if pod_index == 0 else "false",
        L.REVISION: revisions[0],
        L.ROLE_REVISION: revisions[1],
    }
    annotations = {**compat_pod_annotations(ms, group_index, role, role_index, pod_index), **user_annotations}
    # Only Phalanx says a pod is PD: the router would pair a pod whose template claimed it.
    pd_labels, pd_annotations = pd_metadata(ms, group_index, role)
    labels = {k: v for k, v in labels.items() if k not in PD_POD_LABELS} | pd_labels
    annotations = {k: v for k, v in annotations.items() if k not in PD_POD_ANNOTATIONS} | pd_annotations
    gang = ms.gang_scheduler
    if gang == "volcano":
        annotations[L.VOLCANO_GROUP_ANNOTATION] = group_name(ms.name, group_index)
        annotations[L.VOLCANO_TASK_ANNOTATION] = role.name
    elif gang == "coscheduling":
        labels[L.COSCHEDULING_LABEL] = group_name(ms.name, group_index)
    spec = copy.deepcopy(template.spec)
    spec["schedulerName"] = ms.spec.scheduler_name
    spec.update(dns_identity(ms, group_index, role, role_index, pod_index))
    env = injected_env(ms, group_index, role, role_index, pod_index)
    for kind in ("initContainers", "containers"):
        if spec.get(kind):
            spec[kind] = _with_env(spec[kind], env)
    name = pod_name(ms.name, group_index, role.name, role_index, pod_index)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(ms, name, labels, annotations),
        "spec": spec,
    }


def headless_service(ms: ModelServing, group_index: int, role: Role, role_index: int) -> Object:
    """Gives the entry pod a DNS name before it is Ready, so workers can find it while starting."""
    labels = role_instance_labels(ms, group_index, role, role_index)
    name = entry_service_name(ms.name, group_index, role.name, role_index)
    # The revision label lets the controller rebuild a group whose pods are all being recreated.
    own_labels = {
        **kthena_instance_labels(ms, group_index, role, role_index),
        **labels,
        L.REVISION: group_revision(ms),
        L.ROLE_REVISION: role_revision(ms, role),
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ms, name, own_labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {**labels, L.ENTRY: "true"},
        },
    }


def subdomain_service(ms: ModelServing, group_index: int, role: Role) -> Object:
    """Publishes every pod of a role in a group under its hostname (`spec.subdomain` names this
    Service), ready or not, so workers and entry pods find each other while starting.

    Its selector holds for every template, so a role rollout keeps it (and only relabels it).
    """
    selector = {**group_labels(ms, group_index), L.ROLE: role.name}
    name = subdomain_service_name(ms.name, group_index, role.name)
    labels = {
        **kthena_role_labels(ms, group_index, role),
        L.LWS_NAME: ms.name,
        **selector,
        L.REVISION: group_revision(ms),  # a group reduced to this Service is rebuilt at its revision
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ms, name, labels),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": selector},
    }


def _gang_members(ms: ModelServing) -> list[tuple[Role, int]]:
    """(role, role instances that must start together) for each role."""
    minimums = ms.spec.template.gang_policy.min_role_replicas if ms.spec.template.gang_policy else {}
    return [
        (role, min(minimums.get(role.name, role.replicas), role.replicas)) for role in ms.spec.template.roles
    ]


def gang_min_member(ms: ModelServing) -> int:
    return sum(role.group_size * count for role, count in _gang_members(ms))


@per_object  # the same for every group of a spec: computed once per spec object
def gang_min_resources(ms: ModelServing) -> dict[str, str]:
    lists: list[dict[str, str]] = []
    for role, count in _gang_members(ms):
        entry = pod_requests(role.entry_template.spec)
        worker = pod_requests(role.worker_template.spec) if role.worker_template else {}
        lists += [entry] * count + [worker] * (count * role.worker_replicas)
    return add_resources(lists)


def gang_object(ms: ModelServing, group_index: int) -> Object | None:
    """The PodGroup that makes the scheduler place a ServingGroup whole or not at all."""
    gang = ms.gang_scheduler
    if gang == "none":
        return None
    name = group_name(ms.name, group_index)
    labels = {**kthena_group_labels(ms, group_index), **group_labels(ms, group_index)}
    metadata = _metadata(ms, name, {**labels, L.REVISION: group_revision(ms)})
    min_member = gang_min_member(ms)
    resources = gang_min_resources(ms)
    if gang == "coscheduling":
        timeout = ms.metadata.annotations.get(L.COSCHEDULING_TIMEOUT_ANNOTATION)
        coscheduling_spec: Object = {"minMember": max(min_member, 1)}
        if resources:
            coscheduling_spec["minResources"] = dict(resources)
        coscheduling_spec["scheduleTimeoutSeconds"] = (
            int(timeout) if timeout and timeout.isdigit() else (DEFAULT_SCHEDULE_TIMEOUT_SECONDS)
        )
        return {
            "apiVersion": L.COSCHEDULING_PODGROUP_API,
            "kind": "PodGroup",
            "metadata": metadata,
            "spec": coscheduling_spec,
        }
    spec: Object = {"minMember": min_member}
    if resources:
        spec["minResources"] = dict(resources)
    queue = ms.metadata.annotations.get(L.VOLCANO_QUEUE_ANNOTATION)
    if queue:
        spec["queue"] = queue
    topology = ms.spec.template.network_topology
    if topology and topology.group_policy:
        spec["networkTopology"] = topology.group_policy.to_dict()
    sub_groups = []
    for role, count in _gang_members(ms):
        policy: Object = {
            "name": role.name,
            "subGroupSize": role.group_size,
            "minSubGroups": count,
            "labelSelector": {"matchLabels": {L.NAME: ms.name, L.ROLE: role.name}},
            "matchLabelKeys": [L.ROLE_INDEX],
        }
        if topology and topology.role_policy:
            policy["networkTopology"] = topology.role_policy.to_dict()
        sub_groups.append(policy)
    spec["subGroupPolicy"] = sub_groups
    return {"apiVersion": L.VOLCANO_PODGROUP_API, "kind": "PodGroup", "metadata": metadata, "spec": spec}


def role_instance_objects(ms: ModelServing, group_index: int, role: Role, role_index: int) -> list[Object]:
    objects = [headless_service(ms, group_index, role, role_index)]
    objects += [pod(ms, group_index, role, role_index, index) for index in range(role.group_size)]
    return objects


def group_objects(ms: ModelServing, group_index: int, *, with_gang: bool = True) -> list[Object]:
    """One ServingGroup: its gang object first (it must exist before its pods), then per role its
    subdomain Service and role instances."""
    objects: list[Object] = []
    gang = gang_object(ms, group_index) if with_gang else None
    if gang is not None:
        objects.append(gang)
    for role in ms.spec.template.roles:
        objects.append(subdomain_service(ms, group_index, role))
        for role_index in range(role.replicas):
            objects += role_instance_objects(ms, group_index, role, role_index)
    return objects


def _entry_ports(ms: ModelServing) -> list[Object]:
    ports: dict[tuple[int, str], Object] = {}
    for role in ms.spec.template.roles:
        for container in role.entry_template.spec.get("containers") or []:
            for port in container.get("ports") or []:
                number, protocol = port.get("containerPort"), port.get("protocol", "TCP")
                if not isinstance(number, int) or (number, protocol) in ports:
                    continue
                name = port.get("name") or f"{str(protocol).lower()}-{number}"
                entry: Object = {"name": name, "port": number, "targetPort": number}
                if protocol != "TCP":
                    entry["protocol"] = protocol
                ports[(number, protocol)] = entry
    return list(ports.values())


def client_service(ms: ModelServing) -> Object:
    """The one Service clients (or the router) use: every entry pod of every group."""
    spec: Object = {"selector": {L.NAME: ms.name, L.ENTRY: "true"}}
    ports = _entry_ports(ms)
    if ports:
        spec["type"] = "ClusterIP"
        spec["ports"] = ports
    else:
        spec["clusterIP"] = "None"  # no declared port: DNS-only, which a Service without ports must be
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ms, ms.name, {L.NAME: ms.name}),
        "spec": spec,
    }


def steady_state(ms: ModelServing) -> list[Object]:
    """Every object of the ModelServing when all `replicas` groups run the current spec."""
    objects = [client_service(ms)]
    for group_index in range(ms.spec.replicas):
        objects += group_objects(ms, group_index)
    return objects


def status_label_selector(ms: ModelServing) -> str:
    """Selects exactly one pod per ServingGroup, so HPA/KEDA pod counts equal group counts."""
    first = ms.spec.template.roles[0].name
    return f"{L.NAME}={ms.name},{L.ENTRY}=true,{L.ROLE}={first},{L.ROLE_INDEX}=0"
