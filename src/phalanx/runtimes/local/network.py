"""Loopback networking for local pods: one 127.X.a.b address per pod, and Services resolved by name.

Linux routes all of 127.0.0.0/8 to `lo`, so every pod can listen on its declared ports without
clashing with another pod. There is no cluster DNS, so env values that name a Service
(`<svc>.<ns>[.svc[.cluster.local]]`) are replaced by the IP of the pod the Service selects.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

Object = dict[str, Any]

_NAME = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
# A Service DNS name standing alone or inside a URL/host:port; not part of a longer dotted name.
_SERVICE_DNS = re.compile(rf"(?<![\w.-])({_NAME})\.({_NAME})(?:\.svc(?:\.cluster\.local)?)?(?![\w-]|\.\w)")


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
        (p for p in pods if selects(selector, p.get("metadata", {}).get("labels") or {})),
        key=lambda p: (bool(p["metadata"].get("deletionTimestamp")), p["metadata"]["name"]),
    )
    for pod in candidates:
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            return str(ip)
    return None


def resolve_services(value: str, addresses: Mapping[tuple[str, str], str]) -> str:
    """Replaces every `<svc>.<ns>[.svc[.cluster.local]]` naming a known Service with its address."""

    def replace(match: re.Match[str]) -> str:
        return addresses.get((match.group(2), match.group(1)), match.group(0))

    return _SERVICE_DNS.sub(replace, value)
