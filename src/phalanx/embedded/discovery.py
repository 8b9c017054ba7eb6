"""Router endpoints from the local runtime's pods: one per entry pod, routable while Ready, not draining."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from phalanx.api import labels as L
from phalanx.controller.observed import DRAINING_ANNOTATION
from phalanx.router.endpoints import Endpoint

DEFAULT_HTTP_PORT = 8000


def http_port(pod: dict[str, Any]) -> int:
    """The entry container's port named `http`, else its first declared port, else vLLM's 8000."""
    ports = [
        port
        for container in pod.get("spec", {}).get("containers") or []
        for port in container.get("ports") or []
        if isinstance(port.get("containerPort"), int)
    ]
    named = [p["containerPort"] for p in ports if p.get("name") == "http"]
    if named:
        return int(named[0])
    return int(ports[0]["containerPort"]) if ports else DEFAULT_HTTP_PORT


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def endpoints_from_pods(pods: Iterable[dict[str, Any]]) -> list[Endpoint]:
    endpoints = []
    for pod in pods:
        metadata = pod.get("metadata", {})
        labels = metadata.get("labels") or {}
        ip = pod.get("status", {}).get("podIP")
        if labels.get(L.ENTRY) != "true" or not ip:
            continue
        draining = DRAINING_ANNOTATION in (metadata.get("annotations") or {})
        endpoints.append(
            Endpoint(
                # Pod names repeat across namespaces (same ModelServing name): qualify them.
                name=f"{metadata.get('namespace', 'default')}/{metadata['name']}",
                url=f"http://{ip}:{http_port(pod)}",
                serving=labels.get(L.NAME, ""),
                group_index=int(labels.get(L.GROUP_INDEX, "0")),
                ready=_ready(pod) and not metadata.get("deletionTimestamp"),
                draining=draining or bool(metadata.get("deletionTimestamp")),
            )
        )
    return endpoints
