"""Loopback networking for local pods: one 127.X.a.b address per pod, and DNS names resolved locally.

Linux routes all of 127.0.0.0/8 to `lo`, so every pod can listen on its declared ports without
clashing with another pod. There is no cluster DNS, so env values that name a Service
(`<svc>.<ns>[.svc[.cluster.local]]`) are replaced by the IP of the pod the Service selects, and
those that name a pod by hostname (`<hostname>.<subdomain>.<ns>[.svc[.cluster.local]]`, the record
cluster DNS keeps for a pod whose `subdomain` is a Service selecting it) by that pod's IP.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

Object = dict[str, Any]

_NAME = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
# A dotted name standing alone or inside a URL/host:port; not part of a longer dotted name.
_DOTTED = re.compile(rf"(?<![\w.-]){_NAME}(?:\.{_NAME})+(?![\w-]|\.\w)")
_CLUSTER_SUFFIXES = (("svc", "cluster", "local"), ("svc",), ())


class AddressPool:
    """Hands each pod name its own address in 127.X.0.0/16; the same name always gets the same one."""

    def __init__(self, second_octet: int | None = None) -> None:
        # Random per runtime so two runtimes on one machine rarely share addresses; never 127.0.0.1.
        self.second_octet = second_octet if second_octet is not None else random.randint(16, 250)
        if not 1 <= self.second_octet <= 254:
            raise ValueError("second octet must be between 1 and 254")
        self._assigned: dict[tuple[str, str], str] = {}

    def address(self, namespace: str, name: str) -> str:
        key = (namespace, name)
        if key not in self._assigned:
            index = len(self._assigned) + 1
            high, low = divmod(index, 254)
            if high > 255:
                raise RuntimeError("no loopback addresses left")
            self._assigned[key] = f"127.{self.second_octet}.{high}.{low + 1}"
        return self._assigned[key]

    def known(self, namespace: str, name: str) -> str | None:
        return self._assigned.get((namespace, name))


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_address(service: Object, pods: Iterable[Object]) -> str | None:
    """The IP a Service name resolves to locally: the first (by name) live pod it selects."""
    selector = (service.get("spec") or {}).get("selector") or {}
    candidates = sorted(
        (p for p in pods if selects(selector, p.get("metadata", {}).get("labels") or {})), key=_live_first
    )
    for pod in candidates:
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            return str(ip)
    return None


def _live_first(pod: Object) -> tuple[bool, str]:
    return bool(pod["metadata"].get("deletionTimestamp")), pod["metadata"]["name"]


def host_addresses(services: Iterable[Object], pods: Iterable[Object]) -> dict[tuple[str, str, str], str]:
    """(namespace, subdomain, hostname) -> pod IP, for pods whose subdomain Service selects them."""
    selectors = {
        (s["metadata"].get("namespace", ""), s["metadata"]["name"]): (s.get("spec") or {}).get("selector")
        for s in services
    }
    hosts: dict[tuple[str, str, str], str] = {}
    for pod in sorted(pods, key=_live_first, reverse=True):  # live pods written last, so they win
        spec, metadata = pod.get("spec") or {}, pod["metadata"]
        namespace, host, subdomain = (
            metadata.get("namespace", ""),
            spec.get("hostname"),
            spec.get("subdomain"),
        )
        ip = (pod.get("status") or {}).get("podIP")
        selector = selectors.get((namespace, subdomain or "")) or {}
        if host and ip and selects(selector, metadata.get("labels") or {}):
            hosts[(namespace, str(subdomain), str(host))] = str(ip)
    return hosts


def _lookup(
    labels: list[str],
    services: Mapping[tuple[str, str], str],
    hosts: Mapping[tuple[str, str, str], str],
) -> str | None:
    for suffix in _CLUSTER_SUFFIXES:
        if suffix and tuple(labels[-len(suffix) :]) != suffix:
            continue
        name = labels[: len(labels) - len(suffix)]
        found = None
        if len(name) == 2:
            found = services.get((name[1], name[0]))
        elif len(name) == 3:
            found = hosts.get((name[2], name[1], name[0]))
        if found:
            return found
    return None


def resolve_in_namespace(namespace: str, value: str, services: list[Object], pods: list[Object]) -> str:
    """`value` with the names of one namespace's Services and pod hostnames replaced by pod IPs."""
    if "." not in value:
        return value
    addresses: dict[tuple[str, str], str] = {}
    for service in services:
        address = service_address(service, pods)
        if address:
            addresses[(namespace, service["metadata"]["name"])] = address
    return resolve_dns(value, addresses, host_addresses(services, pods))


def resolve_dns(
    value: str,
    services: Mapping[tuple[str, str], str],
    hosts: Mapping[tuple[str, str, str], str] | None = None,
) -> str:
    """Replaces every known `<svc>.<ns>` and `<hostname>.<subdomain>.<ns>` name (each optionally
    followed by `.svc` or `.svc.cluster.local`) with its address; anything else stays as written.

    `services` maps (namespace, Service) and `hosts` (namespace, subdomain, hostname) to an IP.
    """

    def replace(match: re.Match[str]) -> str:
        return _lookup(match.group(0).split("."), services, hosts or {}) or match.group(0)

    return _DOTTED.sub(replace, value)
