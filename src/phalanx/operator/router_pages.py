"""Which router pages the operator's autoscaler reads, and how their figures add up.

`--router-metrics-url` usually names the router's Service (`http://NAME.NAMESPACE.svc:PORT/metrics`,
what the chart sets). Behind a Service every read reaches one replica: its queue is a share of
the queue, and its counters differ from the next replica's, so rates taken across two reads
would be wrong. So when the URL names a Service the operator can read, each ready pod behind it
is read at its own address, each page keeps its own window, and the figures are added up; any
replica's page not read makes the router's figures unknown for the pass (a share is not the
whole). Another URL, or a Service the operator may not read (its permissions cover the watched
namespaces only), is read as it is: one page per pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from phalanx.autoscale.observe.router import RouterFigures

Object = Mapping[str, Any]


@dataclass(frozen=True)
class ServiceUrl:
    name: str
    namespace: str
    port: int
    path: str


def service_url(url: str) -> ServiceUrl | None:
    """`http://router.ns.svc:8000/metrics` (or `.svc.cluster.local`, or no port: 80) -> the
    Service's name, namespace, port and path; None for a URL that names no Service."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    labels = host.split(".")
    if parts.scheme != "http" or len(labels) < 3 or labels[2] != "svc":
        return None
    if labels[3:] and labels[3:] != ["cluster", "local"]:
        return None
    try:
        port = parts.port or 80
    except ValueError:
        return None
    return ServiceUrl(labels[0], labels[1], port, parts.path or "/")


def pod_urls(service: Object, pods: Iterable[Object], target: ServiceUrl) -> dict[str, str] | None:
    """Pod name -> the page's URL at the pod's own address, for each ready pod the Service selects;
    None when the Service has no selector or no port `target.port` (read the URL as it is)."""
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    port = next((p for p in spec.get("ports") or [] if p.get("port") == target.port), None)
    if not selector or port is None:
        return None
    wanted = port.get("targetPort", target.port)
    found: dict[str, str] = {}
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        labels = meta.get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()) or meta.get("deletionTimestamp"):
            continue
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        number = _container_port(pod, wanted)
        if ready and status.get("podIP") and number is not None:
            found[meta.get("name", "")] = f"http://{status['podIP']}:{number}{target.path}"
    return found


def _container_port(pod: Object, wanted: Any) -> int | None:
    if isinstance(wanted, int):
        return wanted
    if isinstance(wanted, str) and wanted.isdigit():
        return int(wanted)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == wanted:
                return int(port["containerPort"])
    return None


def added(figures: Sequence[RouterFigures | None]) -> RouterFigures | None:
    """The replicas' figures added up; None (unknown) when there are none or any is unknown. A
    figure one replica does not know (None) leaves the sum unknown too."""
    if not figures or any(f is None for f in figures):
        return None
    known = [f for f in figures if f is not None]
    inflight: dict[str, float] = {}
    for one in known:
        for unit, value in one.inflight.items():
            inflight[unit] = inflight.get(unit, 0.0) + value

    def total(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else sum(v for v in values if v is not None)

    return RouterFigures(
        inflight=inflight,
        queue=total([f.queue for f in known]),
        held=total([f.held for f in known]),
        arrivals_per_second=total([f.arrivals_per_second for f in known]),
        arrival_prompt_tokens_per_second=total([f.arrival_prompt_tokens_per_second for f in known]),
    )
