"""Router endpoints from entry pods: the one mapping `phalanx up` and Kubernetes discovery share.

Pure functions over Kubernetes-shaped pod dicts (the local runtime's pods have the same shape). An
entry pod with an address becomes an `Endpoint` named `namespace/pod`; it takes new requests while
it is Running and Ready, not terminating and not marked draining. Its models are the names its
serving container passes to `--served-model-name`; when they cannot be read from the pod, the
router asks the endpoint's `GET /v1/models` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from phalanx.api import labels as L
from phalanx.api.argv import container_commands, flag_values
from phalanx.controller.observed import DRAINING_ANNOTATION
from phalanx.router.endpoints import (
    DEFAULT_BOOTSTRAP_PORT,
    PD_ROLES,
    Endpoint,
    PdProtocol,
    PdRole,
)

Object = Mapping[str, Any]

DEFAULT_HTTP_PORT = 8000
MODEL_NAME_FLAG = "--served-model-name"
DEFAULT_HEALTH_PATH = "/health"  # vLLM's and the simulator's


def _metadata(obj: Object) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _labels(obj: Object) -> Mapping[str, Any]:
    labels = _metadata(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def is_entry(pod: Object) -> bool:
    return _labels(pod).get(L.ENTRY) == "true"


def _containers(pod: Object) -> list[Mapping[str, Any]]:
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    return [c for c in containers or [] if isinstance(c, Mapping)]


def _serving_container(pod: Object) -> tuple[Mapping[str, Any] | None, int]:
    """The container that serves HTTP, and its port.

    The port named `http`, else the first declared port, else vLLM's 8000 on the first container.
    """
    declared = [
        (container, port)
        for container in _containers(pod)
        for port in container.get("ports") or []
        if isinstance(port, Mapping) and isinstance(port.get("containerPort"), int)
    ]
    for container, port in declared:
        if port.get("name") == "http":
            return container, int(port["containerPort"])
    if declared:
        container, port = declared[0]
        return container, int(port["containerPort"])
    containers = _containers(pod)
    return (containers[0] if containers else None), DEFAULT_HTTP_PORT


def http_port(pod: Object) -> int:
    """The entry container's port named `http`, else its first declared port, else vLLM's 8000."""
    return _serving_container(pod)[1]


def health_path(pod: Object) -> str:
    """The path the entry container's readiness probe asks over HTTP, else `/health`.

    The router's active check asks the same question as the kubelet: SGLang's `/health` runs a
    generation that can take its 20 s timeout under load, so its recipe probes `/ready` instead.
    """
    container, _ = _serving_container(pod)
    probe = container.get("readinessProbe") if container is not None else None
    get = probe.get("httpGet") if isinstance(probe, Mapping) else None
    path = get.get("path") if isinstance(get, Mapping) else None
    return path if isinstance(path, str) and path.startswith("/") else DEFAULT_HEALTH_PATH


def pod_ready(pod: Object) -> bool:
    """Running with condition Ready=True (a failed or finished pod may keep a stale condition)."""
    status = pod.get("status")
    if not isinstance(status, Mapping) or status.get("phase") != "Running":
        return False
    conditions = status.get("conditions") or []
    return any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


# -- model names ---------------------------------------------------------------------------------


def served_model_names(container: Mapping[str, Any]) -> tuple[str, ...]:
    """The names `--served-model-name` gives in a container's command and args, as argparse reads them.

    Empty when the flag is absent or the names are not known before the pod runs (they use `$`
    expansion, or the shell script cannot be read): the router then asks the endpoint.
    """
    names: list[str] | None = None
    for command in container_commands(container):
        found = flag_values(command, MODEL_NAME_FLAG)
        if found is not None:
            names = found  # the last one wins, as in argparse
    if not names or any("$" in name or not name for name in names):
        return ()
    return tuple(dict.fromkeys(names))


def entry_model_names(template: Object) -> tuple[str, ...]:
    """`served_model_names` of the serving container of an entry pod, or of its pod template."""
    container = _serving_container(template)[0]
    return served_model_names(container) if container is not None else ()


# -- endpoints -----------------------------------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def pd_fields(pod: Object) -> dict[str, Any]:
    """The prefill/decode part of an entry pod's endpoint, from the controller's labels and
    annotations. A pod without a known PD role is aggregated (none of these fields); a role without
    a pair key pairs within its ModelServing, the controller's default scope."""
    labels = _labels(pod)
    role = labels.get(L.PD_ROLE)
    if role not in PD_ROLES:
        return {}
    annotations = _metadata(pod).get("annotations")
    notes = annotations if isinstance(annotations, Mapping) else {}
    protocol = notes.get(L.PD_PROTOCOL_ANNOTATION)
    pd_role: PdRole = "prefill" if role == "prefill" else "decode"
    pd_protocol: PdProtocol = "sglang" if protocol == "sglang" else "vllm"
    fields: dict[str, Any] = {
        "pd_role": pd_role,
        "pd_protocol": pd_protocol,
        "pd_pair_key": str(labels.get(L.PD_PAIR_KEY) or labels.get(L.NAME) or ""),
    }
    if pd_protocol == "sglang" and pd_role == "prefill":
        port = _int(notes.get(L.PD_BOOTSTRAP_PORT_ANNOTATION))
        fields["bootstrap_port"] = port if 0 < port < 65536 else DEFAULT_BOOTSTRAP_PORT
    return fields


def endpoint_from_pod(pod: Object) -> Endpoint | None:
    """The endpoint of an entry pod that has an address; None for workers and unscheduled pods."""
    metadata = _metadata(pod)
    labels = _labels(pod)
    status = pod.get("status")
    ip = status.get("podIP") if isinstance(status, Mapping) else None
    name = metadata.get("name")
    if not is_entry(pod) or not ip or not isinstance(ip, str) or not name:
        return None
    terminating = bool(metadata.get("deletionTimestamp"))
    annotations = metadata.get("annotations")
    marked = isinstance(annotations, Mapping) and DRAINING_ANNOTATION in annotations
    port = http_port(pod)
    host = f"[{ip}]" if ":" in ip else ip
    return Endpoint(
        # Pod names repeat across namespaces (same ModelServing name): qualify them.
        name=f"{metadata.get('namespace') or 'default'}/{name}",
        url=f"http://{host}:{port}",
        serving=str(labels.get(L.NAME, "")),
        group_index=_int(labels.get(L.GROUP_INDEX)),
        models=entry_model_names(pod),
        health_path=health_path(pod),
        ready=pod_ready(pod) and not terminating,
        draining=marked or terminating,
        **pd_fields(pod),
    )


def endpoints_from_pods(pods: Iterable[Object]) -> list[Endpoint]:
    """One endpoint per entry pod with an address, in the order given."""
    return [ep for ep in map(endpoint_from_pod, pods) if ep is not None]


def serving_endpoints(pods: Iterable[Object], servings: Iterable[Object]) -> list[Endpoint]:
    """The endpoints of the entry pods that belong to a ModelServing that exists, sorted by name.

    A pod belongs to the ModelServing its `serving.phalanx.dev/name` label names in its namespace;
    when the pod has a controller reference to a ModelServing, its uid must match (a pod left over
    from a deleted ModelServing of the same name is not routed to while it is garbage-collected). A
    ModelServing being deleted takes no new requests: its endpoints are draining.
    """
    uids: dict[tuple[str, str], str] = {}
    deleting: set[tuple[str, str]] = set()
    for serving in servings:
        metadata = _metadata(serving)
        key = (str(metadata.get("namespace") or "default"), str(metadata.get("name") or ""))
        uids[key] = str(metadata.get("uid") or "")
        if metadata.get("deletionTimestamp"):
            deleting.add(key)
    endpoints = []
    for pod in pods:
        metadata = _metadata(pod)
        key = (str(metadata.get("namespace") or "default"), str(_labels(pod).get(L.NAME) or ""))
        if key not in uids or not _owned_by(metadata, uids[key]):
            continue
        ep = endpoint_from_pod(pod)
        if ep is None:
            continue
        endpoints.append(replace(ep, draining=True) if key in deleting else ep)
    return sorted(endpoints, key=lambda ep: ep.name)


def _owned_by(metadata: Mapping[str, Any], uid: str) -> bool:
    """False only when the pod's controller is a ModelServing with another uid."""
    for owner in metadata.get("ownerReferences") or []:
        if (
            isinstance(owner, Mapping)
            and owner.get("controller")
            and owner.get("kind") == "ModelServing"
            and str(owner.get("apiVersion", "")).startswith(L.API_GROUP + "/")
        ):
            return bool(uid) and owner.get("uid") == uid
    return True
