"""A small pure model of cluster DNS, written from Kubernetes' DNS-based service discovery spec.

What it covers (zone `cluster.local`):
- a Service with a cluster IP: `<svc>.<ns>.svc.<zone>` -> that IP;
- a headless Service: `<svc>.<ns>.svc.<zone>` -> every ready endpoint's IP, and for each ready
  endpoint that has a hostname, `<hostname>.<svc>.<ns>.svc.<zone>` -> its IP;
- the endpoints, as the endpointslice controller derives them from pods: the Service's selector
  picks pods that have an IP; an endpoint gets the pod's `spec.hostname` only when the pod's
  `spec.subdomain` is this Service's name (same namespace); it counts as ready when the pod is
  Ready, or always when the Service sets `publishNotReadyAddresses`;
- lookups from inside a pod: `search <ns>.svc.<zone> svc.<zone> <zone>` with `ndots:5`, so a
  name with fewer than five dots is tried under each search domain first, then as written.

The cluster tests read real EndpointSlices into the same `Endpoint` records, so the model's
inputs are checked against the real controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ZONE = "cluster.local"
NDOTS = 5

Object = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    pod: str
    ip: str
    hostname: str | None
    ready: bool


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pod_ready(pod: Object) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def endpoints_from_pods(service: Object, pods: Iterable[Object], ips: Mapping[str, str]) -> set[Endpoint]:
    """The endpoints the endpointslice controller would publish; `ips` maps pod name -> IP."""
    meta, spec = service["metadata"], service.get("spec") or {}
    selector = spec.get("selector") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    found = set()
    for pod in pods:
        pod_meta, pod_spec = pod["metadata"], pod.get("spec") or {}
        ip = ips.get(pod_meta["name"])
        if pod_meta.get("namespace") != meta.get("namespace") or not ip:
            continue
        if not selects(selector, pod_meta.get("labels") or {}):
            continue
        named = bool(pod_spec.get("hostname")) and pod_spec.get("subdomain") == meta["name"]
        found.add(
            Endpoint(
                pod=pod_meta["name"],
                ip=ip,
                hostname=pod_spec["hostname"] if named else None,
                ready=publish_not_ready or _pod_ready(pod),
            )
        )
    return found


def endpoints_from_slices(slices: Iterable[Object]) -> set[Endpoint]:
    """The same records, read from real `discovery.k8s.io/v1` EndpointSlices."""
    found = set()
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            ready = (endpoint.get("conditions") or {}).get("ready")
            for address in endpoint.get("addresses") or []:
                found.add(
                    Endpoint(
                        pod=(endpoint.get("targetRef") or {}).get("name", ""),
                        ip=address,
                        hostname=endpoint.get("hostname"),
                        ready=ready is not False,  # unset means ready, per the API
                    )
                )
    return found


def records(services: Iterable[tuple[Object, set[Endpoint]]]) -> dict[str, frozenset[str]]:
    """Every A record the zone holds: fully qualified name (no trailing dot) -> IPs."""
    zone: dict[str, set[str]] = {}
    for service, endpoints in services:
        meta, spec = service["metadata"], service.get("spec") or {}
        name = f"{meta['name']}.{meta['namespace']}.svc.{ZONE}"
        cluster_ip = spec.get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            zone.setdefault(name, set()).add(cluster_ip)
            continue
        for endpoint in endpoints:
            if not endpoint.ready:
                continue
            zone.setdefault(name, set()).add(endpoint.ip)
            if endpoint.hostname:
                zone.setdefault(f"{endpoint.hostname}.{name}", set()).add(endpoint.ip)
    return {name: frozenset(ips) for name, ips in zone.items()}


def resolve(name: str, namespace: str, zone: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """What a lookup of `name` from a pod in `namespace` returns (empty: NXDOMAIN)."""
    if name.endswith("."):
        return zone.get(name[:-1], frozenset())
    search = [f"{namespace}.svc.{ZONE}", f"svc.{ZONE}", ZONE]
    candidates = [f"{name}.{domain}" for domain in search]
    candidates = [*candidates, name] if name.count(".") < NDOTS else [name, *candidates]
    for candidate in candidates:
        if candidate in zone:
            return zone[candidate]
    return frozenset()
