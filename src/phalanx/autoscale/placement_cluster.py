"""How many more units a Kubernetes cluster can still place (pure), for the core's `placeable`.

Only extended resources count (`nvidia.com/gpu`, `amd.com/gpu`...: a name with a domain that is
not Kubernetes' own): they are what a group of a large model waits for, and they are whole
numbers a node either has free or not. A unit's pods are its entry and worker pods (every role
for a whole group, one instance for a role). Each node offers its allocatable amount less what the
pods bound to it and not finished request; the unit's pods, largest first, go on the first node
with room (first fit), unit after unit, until one does not fit. Roles scaled in one pass share the
room (`cluster_room`): the pods of all their units, those waiting for a node and the new ones, go on
the nodes together, largest first, first fit.

What it does not see: taints and tolerations, node selectors and affinity, topology, Volcano
queues and quotas, ResourceQuotas, pods that another scheduler is about to bind, and CPU or
memory. So the figure is an upper bound of what the default scheduler could place; the core
only uses it to stop asking for units that cannot be placed, and the stuck-unit timeout still
catches what this misses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR
from typing import Any

from phalanx.api.quantity import QuantityError, parse_quantity, pod_requests
from phalanx.autoscale.placement import Fits

Amounts = dict[str, int]  # extended resource name -> whole units
MAX_UNITS = 1000  # the count placed is never needed beyond a policy's maxReplicas; this bounds the work


def is_extended(resource: str) -> bool:
    """`nvidia.com/gpu` yes; `cpu`, `memory`, `hugepages-2Mi`, `kubernetes.io/...` no."""
    if "/" not in resource:
        return False
    domain = resource.split("/", 1)[0]
    return not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def _amounts(resources: Mapping[str, Any], rounding: str) -> Amounts:
    found: Amounts = {}
    for name, raw in resources.items():
        if not is_extended(name):
            continue
        try:
            value = int(parse_quantity(raw).to_integral_value(rounding=rounding))
        except QuantityError:
            continue
        if value > 0:
            found[name] = value
    return found


def largest_first(pods: Iterable[Amounts]) -> list[Amounts]:
    return sorted(pods, key=lambda p: sum(p.values()), reverse=True)


def unit_pods(serving: Mapping[str, Any], role: str | None = None) -> list[Amounts]:
    """The extended resources each pod of one unit of the ModelServing (its dict) requests: one
    entry per pod that requests any, largest first."""
    roles = ((serving.get("spec") or {}).get("template") or {}).get("roles") or []
    pods: list[Amounts] = []
    for spec in roles:
        if role is not None and spec.get("name") != role:
            continue
        entry = _amounts(pod_requests((spec.get("entryTemplate") or {}).get("spec") or {}), ROUND_CEILING)
        worker_template = spec.get("workerTemplate")
        worker = _amounts(pod_requests((worker_template or {}).get("spec") or {}), ROUND_CEILING)
        instances = 1 if role is not None else int(spec.get("replicas", 1))
        workers = int(spec.get("workerReplicas", 0)) if worker_template else 0
        pods += ([entry] + [worker] * workers) * instances
    return largest_first(p for p in pods if p)


def free_on_nodes(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> dict[str, Amounts]:
    """Each node that takes pods (schedulable and Ready) by name, sorted: its allocatable extended
    resources less the requests of the pods bound to it that have not finished."""
    free: dict[str, Amounts] = {}
    for node in nodes:
        name = (node.get("metadata") or {}).get("name")
        if not name or (node.get("spec") or {}).get("unschedulable"):
            continue
        conditions = (node.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            continue
        free[name] = _amounts((node.get("status") or {}).get("allocatable") or {}, ROUND_FLOOR)
    for pod in pods:
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound not in free or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        used = _amounts(pod_requests(pod.get("spec") or {}), ROUND_CEILING)
        for resource, amount in used.items():
            free[bound][resource] = free[bound].get(resource, 0) - amount
    return {name: free[name] for name in sorted(free)}


def units_that_fit(free: Mapping[str, Amounts], unit: list[Amounts], most: int = MAX_UNITS) -> int:
    """How many more units go on the nodes (in their order), first fit, at most `most`."""
    room = [dict(node) for node in free.values()]
    placed = 0
    while placed < most:
        for pod in unit:
            node = next((n for n in room if all(n.get(r, 0) >= a for r, a in pod.items())), None)
            if node is None:
                return placed
            for resource, amount in pod.items():
                node[resource] -= amount
        placed += 1
    return placed


def cluster_placeable(unit: list[Amounts], free: Mapping[str, Amounts] | None, unplaced: int) -> int | None:
    """More units the cluster can place after the `unplaced` ones already waiting for a node;
    None (no limit known) when a unit needs no extended resource or the nodes are not known."""
    if not unit or free is None:
        return None
    return max(units_that_fit(free, unit) - unplaced, 0)


def all_fit(free: Mapping[str, Amounts], pods: Sequence[Amounts]) -> bool:
    """Whether every pod goes on the nodes (in their order), largest first, first fit."""
    room = [dict(node) for node in free.values()]
    for pod in largest_first(pods):
        node = next((n for n in room if all(n.get(r, 0) >= a for r, a in pod.items())), None)
        if node is None:
            return False
        for resource, amount in pod.items():
            node[resource] -= amount
    return True


def cluster_room(
    free: Mapping[str, Amounts] | None, units: Mapping[str, list[Amounts]], unplaced: Mapping[str, int]
) -> Fits | None:
    """Whether more units of each role (`units[role]`: one unit's pods) fit on the nodes together
    with every role's `unplaced` units already waiting for a node; None (no limit known) when the
    nodes are not known or no role's unit needs an extended resource."""
    if free is None or not any(units.values()):
        return None

    def fits(more: Mapping[str, int]) -> bool:
        counts = {role: unplaced.get(role, 0) + more.get(role, 0) for role in units}
        return all_fit(
            free, [pod for role, unit in units.items() for _ in range(counts[role]) for pod in unit]
        )

    return fits
