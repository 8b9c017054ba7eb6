"""A gang-aware scheduler for one machine whose only scarce resource is its GPUs.

Pure: given pending pods, the gangs they belong to and the free GPU ids, decide which pods bind to
which GPUs and why the others wait. Pods of a gang (Volcano's `scheduling.k8s.io/group-name`
annotation or coscheduling's `scheduling.x-k8s.io/pod-group` label) bind all together or not at
all; other pods bind one by one. Waiting never blocks smaller work that fits (no strict queue).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from phalanx.api import labels as L
from phalanx.api.quantity import QuantityError, container_requests, parse_quantity

GPU_RESOURCE = "nvidia.com/gpu"
PodKey = tuple[str, str]  # (namespace, name)


def detect_gpus() -> int:
    """GPUs `nvidia-smi -L` lists; 0 without a driver."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return 0
    try:
        result = subprocess.run([binary, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if result.returncode != 0:
        return 0
    return sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))


def _gpus(container: Mapping[str, Any]) -> int:
    raw = container_requests(container).get(GPU_RESOURCE)
    if raw is None:
        return 0
    try:
        value = parse_quantity(raw)
    except QuantityError:
        return 0
    return int(value.to_integral_value(rounding="ROUND_CEILING")) if value > Decimal(0) else 0


def gpu_need(spec: Mapping[str, Any]) -> int:
    """GPUs a pod needs: the containers' sum, at least the largest init container (as Kubernetes)."""
    regular = sum(_gpus(c) for c in spec.get("containers") or [])
    init = max((_gpus(c) for c in spec.get("initContainers") or []), default=0)
    return max(regular, init)


def gang_name(pod: Mapping[str, Any]) -> str | None:
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    return annotations.get(L.VOLCANO_GROUP_ANNOTATION) or labels.get(L.COSCHEDULING_LABEL) or None


@dataclass(frozen=True)
class PendingPod:
    key: PodKey
    gpus: int
    gang: str | None = None  # PodGroup name in the pod's namespace
    created: float = 0.0


@dataclass(frozen=True)
class Gang:
    key: PodKey  # (namespace, PodGroup name)
    min_member: int
    members: int  # pods of the gang in the store (pending or bound), not being deleted


@dataclass(frozen=True)
class Decision:
    bindings: dict[PodKey, tuple[int, ...]] = field(default_factory=dict)
    # Pod -> why it waits; gang -> why the whole gang waits (also on each of its pods).
    unschedulable: dict[PodKey, str] = field(default_factory=dict)
    gangs_waiting: dict[PodKey, str] = field(default_factory=dict)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def schedule(
    pending: Sequence[PendingPod], gangs: Mapping[PodKey, Gang], free: Iterable[int], total: int
) -> Decision:
    """Binds what fits, oldest first; GPU ids are handed out lowest first."""
    free_ids = sorted(free)
    decision = Decision()
    units: dict[tuple[str, str], list[PendingPod]] = {}
    for pod in sorted(pending, key=lambda p: (p.created, p.key)):
        unit = (pod.key[0], pod.gang) if pod.gang is not None else ("", f"{pod.key[0]}/{pod.key[1]}")
        units.setdefault(unit, []).append(pod)
    for (namespace, name), pods in units.items():
        need = sum(p.gpus for p in pods)
        if pods[0].gang is None:
            message = _fit_message(f"pod {pods[0].key[1]}", need, len(free_ids), total)
        else:
            gang = gangs.get((namespace, name))
            if gang is None:
                message = f"gang {name} has no PodGroup yet"
            elif gang.members < gang.min_member:
                message = f"gang {name} has {gang.members} of {gang.min_member} pods"
            else:
                message = _fit_message(f"gang {name}", need, len(free_ids), total)
            if message:
                decision.gangs_waiting[(namespace, name)] = message
        if message:
            for pod in pods:
                decision.unschedulable[pod.key] = message
            continue
        for pod in pods:
            decision.bindings[pod.key] = tuple(free_ids[: pod.gpus])
            free_ids = free_ids[pod.gpus :]
    return decision


def _fit_message(what: str, need: int, free: int, total: int) -> str:
    if need <= free:
        return ""
    if need > total:
        return f"{what} needs {_plural(need, 'GPU')}, this machine has {total} (give more with --gpus)"
    return f"{what} needs {_plural(need, 'GPU')}, {free} of {total} free"


def gang_phase(min_member: int, bound: int, running: int, waiting: bool) -> str:
    """Volcano's PodGroup phase: Pending until placed, Inqueue once bound, Running at minMember."""
    if waiting:
        return "Pending"
    if running >= max(min_member, 1):
        return "Running"
    if bound > 0:
        return "Inqueue"
    return "Pending"
