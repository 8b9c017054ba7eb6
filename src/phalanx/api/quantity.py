"""Kubernetes resource quantities: parse with lightkube, add up, and write back canonically."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from lightkube.utils.quantity import parse_quantity as _lightkube_parse

_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))


class QuantityError(ValueError):
    pass


def parse_quantity(value: Any) -> Decimal:
    """'64Gi' -> Decimal(68719476736); numbers are accepted as YAML writes them (cpu: 125)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise QuantityError("is not a quantity")
    text = str(value).strip()
    try:
        parsed = _lightkube_parse(text)
    except ValueError:
        raise QuantityError(f"'{text}' is not a quantity") from None
    if parsed is None or parsed < 0:
        raise QuantityError(f"'{text}' is not a quantity")
    return parsed


def format_quantity(value: Decimal, *, binary: bool) -> str:
    """Shortest exact spelling: binary suffixes for memory-like sums, decimal otherwise."""
    if value != value.to_integral_value():
        millis = value * 1000
        if millis == millis.to_integral_value():
            return f"{int(millis)}m"
        return str(value.normalize())
    whole = int(value)
    if whole == 0:
        return "0"
    for suffix, factor in _BINARY if binary else _DECIMAL:
        if whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


def add_resources(lists: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Sum resource lists ({'cpu': '4', 'memory': '16Gi'}) resource by resource."""
    totals: dict[str, Decimal] = {}
    binary: dict[str, bool] = {}
    for resources in lists:
        for name, raw in resources.items():
            totals[name] = totals.get(name, Decimal(0)) + parse_quantity(raw)
            binary[name] = binary.get(name, True) and str(raw).strip().endswith("i")
    return {name: format_quantity(total, binary=binary[name]) for name, total in sorted(totals.items())}


def max_resources(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(a)
    for name, raw in b.items():
        if name not in out or parse_quantity(raw) > parse_quantity(out[name]):
            out[name] = raw
    return out


def container_requests(container: Mapping[str, Any]) -> dict[str, Any]:
    """What the scheduler counts for a container: requests, defaulted from limits."""
    resources = container.get("resources") or {}
    requests: dict[str, Any] = dict(resources.get("limits") or {})
    requests.update(resources.get("requests") or {})
    return requests


def pod_requests(spec: Mapping[str, Any]) -> dict[str, str]:
    """A pod's effective requests: sum of containers, at least the largest init container, plus overhead."""
    regular = add_resources(container_requests(c) for c in spec.get("containers") or [])
    init: dict[str, Any] = {}
    for container in spec.get("initContainers") or []:
        if container.get("restartPolicy") == "Always":  # sidecars run alongside the containers
            regular = add_resources([regular, container_requests(container)])
        else:
            init = max_resources(init, container_requests(container))
    total = max_resources(regular, init)
    return add_resources([total, spec.get("overhead") or {}])
