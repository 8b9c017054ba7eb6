"""`LocalRuntime`: the `Runtime` interface on one machine, with pods as child processes.

It wires the pure pieces (store, scheduler, address pool) to the imperative ones (pod workers,
the reaper). Everything runs on one asyncio loop; no threads. See docs/local-runtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing, ModelServingStatus
from phalanx.controller.actions import Event, Kind
from phalanx.controller.observed import GANG_OBJECT_KINDS, format_time, parse_time
from phalanx.runtimes.local.backoff import BackoffPolicy
from phalanx.runtimes.local.kubelet import PodKey, PodWorker, set_condition
from phalanx.runtimes.local.logs import LOGS, check_inside, check_names, log_file, pod_log_dir
from phalanx.runtimes.local.network import AddressPool, resolve_in_namespace
from phalanx.runtimes.local.scheduler import (
    Gang,
    PendingPod,
    detect_gpus,
    gang_name,
    gang_phase,
    gpu_need,
    schedule,
)
from phalanx.runtimes.local.statedir import ensure_private_dir
from phalanx.runtimes.local.store import KINDS, LocalEvent, Store, namespace_of
from phalanx.runtimes.local.watchdog import Reaper, RestartPolicy, guard

log = logging.getLogger("phalanx.runtimes.local")

Object = dict[str, Any]

NODE_NAME = "local"
GPU_ANNOTATION = L.API_GROUP + "/local-gpus"  # the GPU ids a local pod was given ("0,1")
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


@dataclass(frozen=True)
class GpuInventory:
    total: int
    free: int
    free_ids: tuple[int, ...]
    assignment: dict[str, tuple[int, ...]]  # "namespace/pod" -> GPU ids


class LocalRuntime:
    def __init__(
        self,
        state_dir: Path,
        gpus: int | None = None,
        *,
        restart_backoff: BackoffPolicy | None = None,
        close_grace: float = 5.0,
        clock: Callable[[], float] = time.time,
        reaper_policy: RestartPolicy | None = None,
        on_unguarded: Callable[[str], None] | None = None,
    ) -> None:
        """`gpus=None` counts them with `nvidia-smi -L` (0 without a driver).

        `on_unguarded(message)` is called once if the reaper dies and cannot be restarted; the
        runtime has then begun stopping every pod and binds no new one.
        """
        self.state_dir = Path(state_dir)
        self.gpus = detect_gpus() if gpus is None else gpus
        if self.gpus < 0:
            raise ValueError("gpus must be >= 0")
        self.restart_backoff = restart_backoff or BackoffPolicy()
        self.close_grace = close_grace
        self.clock = clock
        self.store = Store(clock=clock)
        self.addresses = AddressPool()
        self._reaper = Reaper(self.state_dir / "pgids")
        self.reaper_policy = reaper_policy or RestartPolicy()
        self.on_unguarded = on_unguarded
        self.unguarded = ""  # why pods may not run: the reaper is lost
        self._guard: asyncio.Task[None] | None = None
        self._workers: dict[PodKey, PodWorker] = {}
        self._gpus_held: dict[PodKey, tuple[int, ...]] = {}
        self._unschedulable: dict[PodKey, str] = {}
        self._gangs_waiting: dict[PodKey, str] = {}
        self._started = False
        self._closed = False
        self._schedule_queued = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Raises StateDirError when the state directory is not private to this user."""
        if self._started:
            return
        ensure_private_dir(self.state_dir)
        ensure_private_dir(self.state_dir / LOGS, inside=True)
        self._reaper.start()
        watch = guard(self._reaper, self.reaper_policy, self._reaper_restarted, self._reaper_lost)
        self._guard = asyncio.create_task(watch, name="reaper guard")
        self._started = True
        self._schedule()

    async def close(self) -> None:
        """Stops every pod (SIGTERM, SIGKILL after at most `close_grace` s) and the reaper. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._guard is not None:
            self._guard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._guard
        workers = list(self._workers.values())
        for worker in workers:
            worker.terminate(min(worker.grace, self.close_grace))
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.close_grace + 5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            worker.kill_now()
        self._reaper.stop()

    @property
    def reaper_pid(self) -> int | None:
        return self._reaper.pid

    def _reaper_restarted(self, message: str) -> None:
        log.warning("%s", message)
        self.store.record("Warning", "ReaperRestarted", message, "default", "Node", NODE_NAME)

    def _reaper_lost(self, message: str) -> None:
        """Without a reaper a crash of this process would leave every pod behind: stop them all."""
        self.unguarded = f"{message}; the pods are stopped, as nothing would stop them if this process died"
        log.error("%s", self.unguarded)
        self.store.record("Warning", "ReaperLost", self.unguarded, "default", "Node", NODE_NAME)
        for worker in list(self._workers.values()):
            worker.terminate(min(worker.grace, self.close_grace))
        self._schedule()
        if self.on_unguarded is not None:
            self.on_unguarded(self.unguarded)

    # --- the Runtime protocol ------------------------------------------------------------------

    def served_gangs(self) -> frozenset[str]:
        # The local scheduler places every group whole, whatever its PodGroup's flavour.
        return GANG_OBJECT_KINDS

    async def list_objects(self, kind: Kind, namespace: str, selector: Mapping[str, str]) -> list[Object]:
        return self.store.list_objects(kind, namespace, selector)

    async def create(self, obj: Object) -> None:
        key = Store.key_of(obj)
        obj = copy.deepcopy(obj)
        if key[0] == "Pod":
            ip = self.addresses.address(key[1], key[2])
            obj["status"] = {"phase": "Pending", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": []}
        if self.store.create(obj) is not None:
            self._schedule()

    async def apply(self, obj: Object) -> None:
        kind, namespace, name = Store.key_of(obj)
        metadata = obj.get("metadata") or {}

        def change(stored: Object) -> None:
            stored["metadata"]["labels"] = dict(metadata.get("labels") or {})
            if metadata.get("annotations"):
                stored["metadata"].setdefault("annotations", {}).update(metadata["annotations"])
            if kind != "Pod":  # a pod's spec is immutable once created
                stored["spec"] = copy.deepcopy(obj.get("spec") or {})

        if not self.store.update(kind, namespace, name, change):
            await self.create(obj)
            return
        self._schedule()

    async def delete(self, kind: Kind, namespace: str, name: str) -> None:
        if kind != "Pod":
            if self.store.remove(kind, namespace, name) is not None and kind == "PodGroup":
                self._schedule()
            return
        key = (namespace, name)
        pod = self.store.peek("Pod", namespace, name)
        if pod is None:
            return
        worker = self._workers.get(key)
        if worker is None:  # never bound: nothing runs, it goes at once
            self.store.remove("Pod", namespace, name)
            self._unschedulable.pop(key, None)
            self._schedule()
            return
        if not pod["metadata"].get("deletionTimestamp"):
            grace = int(worker.grace)

            def mark(stored: Object) -> None:
                stored["metadata"]["deletionTimestamp"] = format_time(self.clock())
                stored["metadata"]["deletionGracePeriodSeconds"] = grace

            self.store.update("Pod", namespace, name, mark)
            self.pod_event(key, "Normal", "Killing", f"Stopping pod {name} (grace period {grace}s)")
        worker.terminate()
        self._schedule()

    async def annotate(
        self, kind: Kind, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        def change(stored: Object) -> None:
            current = stored["metadata"].setdefault("annotations", {})
            for key, value in annotations.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value

        self.store.update(kind, namespace, name, change)

    async def record_event(self, namespace: str, serving: str, event: Event) -> None:
        self.store.record(
            event.type,
            event.reason,
            event.message,
            namespace,
            event.object_kind,
            event.object_name or serving,
            serving,
        )

    async def list_servings(self) -> list[ModelServing]:
        return self.store.list_servings()

    async def write_status(self, namespace: str, name: str, status: ModelServingStatus) -> None:
        self.store.write_status(namespace, name, status)

    async def wait_for_change(self, timeout: float) -> None:
        await self.store.wait_for_change(timeout)

    # --- ModelServings -------------------------------------------------------------------------

    async def apply_serving(self, ms: ModelServing) -> ModelServing:
        """Creates it, or replaces its spec; `metadata.generation` counts spec changes, status is kept."""
        return self.store.apply_serving(ms)

    async def get_serving(self, namespace: str, name: str) -> ModelServing | None:
        return self.store.get_serving(namespace, name)

    async def delete_serving(self, namespace: str, name: str) -> bool:
        """Deletes it and (like owner-reference GC) every object labelled with its name; False if absent."""
        found = self.store.remove_serving(namespace, name) is not None
        for kind in KINDS:
            for obj in self.store.select(kind, namespace, {L.NAME: name}):
                await self.delete(kind, namespace, obj["metadata"]["name"])  # type: ignore[arg-type]
        return found

    # --- inspection ----------------------------------------------------------------------------

    def events(self, serving: str | None = None) -> list[LocalEvent]:
        return self.store.events(serving)

    def gpu_inventory(self) -> GpuInventory:
        held = {gpu for ids in self._gpus_held.values() for gpu in ids}
        free = tuple(gpu for gpu in range(self.gpus) if gpu not in held)
        assignment = {f"{ns}/{name}": ids for (ns, name), ids in sorted(self._gpus_held.items()) if ids}
        return GpuInventory(total=self.gpus, free=len(free), free_ids=free, assignment=assignment)

    @staticmethod
    def pod_gpus(pod: Mapping[str, Any]) -> str:
        """The GPU ids a pod was given, as CUDA_VISIBLE_DEVICES spells them ("" for none)."""
        return str(((pod.get("metadata") or {}).get("annotations") or {}).get(GPU_ANNOTATION, ""))

    def pod_address(self, namespace: str, pod: str) -> str:
        obj = self.store.peek("Pod", namespace, pod)
        address = ((obj or {}).get("status") or {}).get("podIP") or self.addresses.known(namespace, pod)
        if not address:
            raise LookupError(f"no pod {pod} in namespace {namespace}")
        return str(address)

    def pod_pids(self, namespace: str, pod: str) -> list[int]:
        """Process ids of the pod's running containers (each also its process group id)."""
        worker = self._workers.get((namespace, pod))
        return worker.pids() if worker is not None else []

    def log_dir(self, namespace: str, pod: str) -> Path:
        """Raises BadLogRequest (a ValueError) when a name is not a Kubernetes name."""
        return pod_log_dir(self.state_dir, namespace, pod)

    def log_path(
        self, namespace: str, pod: str, container: str | None = None, previous: bool = False
    ) -> Path:
        """Where a container's output goes (`previous`: its run before the last restart).

        Logs outlive their pod. Without `container`: the pod's default container, else its first.
        Raises BadLogRequest when a name is not a name or the path leads outside the state
        directory, LookupError when there is no such pod or container.
        """
        check_names(namespace, pod, container)
        directory = self.log_dir(namespace, pod)
        obj = self.store.peek("Pod", namespace, pod)
        if obj is None and not directory.is_dir():
            raise LookupError(f"no pod {pod} in namespace {namespace}")
        if obj is not None:
            spec = obj.get("spec") or {}
            names = [
                str(c.get("name"))
                for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
            ]
            if container is None:
                annotations = obj["metadata"].get("annotations") or {}
                container = annotations.get(DEFAULT_CONTAINER_ANNOTATION) or (names[0] if names else "")
            elif container not in names:
                raise LookupError(f"pod {pod} has no container {container} (containers: {', '.join(names)})")
        elif container is None:
            logs = sorted(
                p.name[: -len(".log")]
                for p in directory.glob("*.log")
                if not p.name.endswith(".previous.log")
            )
            if len(logs) != 1:
                raise LookupError(
                    f"pod {pod} is gone and had containers {', '.join(logs) or 'none'}; name one"
                )
            container = logs[0]
        path = log_file(directory, container, previous)
        check_inside(self.state_dir, path)
        return path

    # --- kubelet host (called by pod workers) --------------------------------------------------

    def publish(self, key: PodKey, uid: str, status: Object) -> None:
        def change(stored: Object) -> None:
            if stored["metadata"].get("uid") == uid:
                stored["status"] = copy.deepcopy(status)

        self.store.update("Pod", key[0], key[1], change)
        self._refresh_gangs()

    def pod_event(self, key: PodKey, type_: str, reason: str, message: str) -> None:
        pod = self.store.peek("Pod", key[0], key[1]) or {}
        serving = ((pod.get("metadata") or {}).get("labels") or {}).get(L.NAME, "")
        self.store.record(type_, reason, message, key[0], "Pod", key[1], serving)

    def resolve(self, namespace: str, value: str) -> str:
        if "." not in value:
            return value
        pods = self.store.select("Pod", namespace, {})
        return resolve_in_namespace(namespace, value, self.store.select("Service", namespace, {}), pods)

    def track(self, pgid: int) -> None:
        self._reaper.add(pgid)

    def untrack(self, pgid: int) -> None:
        self._reaper.discard(pgid)

    def processes_gone(self, key: PodKey) -> None:
        if self._gpus_held.pop(key, None):
            self._schedule()

    def finished(self, key: PodKey, uid: str) -> None:
        worker = self._workers.get(key)
        if worker is not None and worker.uid == uid:
            del self._workers[key]
        pod = self.store.peek("Pod", key[0], key[1])
        if pod is not None and pod["metadata"].get("uid") == uid:
            self.store.remove("Pod", key[0], key[1])
        self._schedule()

    # --- scheduling ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Schedules soon, once: a controller creates a group's pods one call at a time, and the
        gang rule must see them all before it tells a user the gang is incomplete."""
        if not self._started or self._closed or self._schedule_queued:
            return
        self._schedule_queued = True
        asyncio.get_running_loop().call_soon(self._schedule_now)

    def _schedule_now(self) -> None:
        self._schedule_queued = False
        if not self._started or self._closed:
            return
        pending: list[PendingPod] = []
        members: Counter[PodKey] = Counter()
        for pod in self.store.select("Pod", None, {}):
            metadata = pod["metadata"]
            key = (metadata["namespace"], metadata["name"])
            gang = gang_name(pod)
            if metadata.get("deletionTimestamp"):
                continue
            if gang is not None:
                members[(key[0], gang)] += 1
            if key in self._workers or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            created = parse_time(metadata.get("creationTimestamp")) or 0.0
            pending.append(PendingPod(key, gpu_need(pod.get("spec") or {}), gang, created))
        if self.unguarded:  # no pod starts unguarded
            for waiting in pending:
                self._mark_unschedulable(waiting.key, f"not started: {self.unguarded}")
            return
        gangs: dict[PodKey, Gang] = {}
        for group in self.store.select("PodGroup", None, {}):
            key = (namespace_of(group), group["metadata"]["name"])
            min_member = int((group.get("spec") or {}).get("minMember") or 0)
            gangs[key] = Gang(key, min_member, members[key])
        decision = schedule(pending, gangs, self.gpu_inventory().free_ids, self.gpus)
        self._gangs_waiting = decision.gangs_waiting
        for key, ids in decision.bindings.items():
            self._bind(key, ids)
        for key, message in decision.unschedulable.items():
            self._mark_unschedulable(key, message)
        self._refresh_gangs()

    def _bind(self, key: PodKey, ids: tuple[int, ...]) -> None:
        now = self.clock()

        def bind(pod: Object) -> None:
            pod["spec"]["nodeName"] = NODE_NAME
            if ids:
                pod["metadata"].setdefault("annotations", {})[GPU_ANNOTATION] = ",".join(map(str, ids))
            status = pod.setdefault("status", {})
            set_condition(status.setdefault("conditions", []), "PodScheduled", True, now)

        self.store.update("Pod", key[0], key[1], bind)
        self._unschedulable.pop(key, None)
        self._gpus_held[key] = ids
        pod = self.store.get("Pod", key[0], key[1])
        assert pod is not None
        worker = PodWorker(self, pod, ids, self.restart_backoff, self.clock)
        self._workers[key] = worker
        gpus = f" with GPUs {','.join(map(str, ids))}" if ids else ""
        self.pod_event(
            key, "Normal", "Scheduled", f"Successfully assigned {key[0]}/{key[1]} to {NODE_NAME}{gpus}"
        )
        worker.start()

    def _mark_unschedulable(self, key: PodKey, message: str) -> None:
        if self._unschedulable.get(key) == message:
            return
        self._unschedulable[key] = message
        now = self.clock()

        def mark(pod: Object) -> None:
            conditions = pod.setdefault("status", {}).setdefault("conditions", [])
            set_condition(conditions, "PodScheduled", False, now, "Unschedulable", message)

        self.store.update("Pod", key[0], key[1], mark)
        self.pod_event(key, "Warning", "FailedScheduling", message)

    def _refresh_gangs(self) -> None:
        groups = self.store.select("PodGroup", None, {})
        if not groups:
            return
        bound: Counter[PodKey] = Counter()
        running: Counter[PodKey] = Counter()
        for pod in self.store.select("Pod", None, {}):
            gang = gang_name(pod)
            if gang is None:
                continue
            key = (pod["metadata"]["namespace"], gang)
            if (
                pod["metadata"]["namespace"]
                and (pod["metadata"]["namespace"], pod["metadata"]["name"]) in self._workers
            ):
                bound[key] += 1
            if (pod.get("status") or {}).get("phase") in ("Running", "Succeeded"):
                running[key] += 1
        now = self.clock()
        for group in groups:
            key = (namespace_of(group), group["metadata"]["name"])
            waiting = self._gangs_waiting.get(key, "")
            min_member = int((group.get("spec") or {}).get("minMember") or 0)
            phase = gang_phase(min_member, bound[key], running[key], bool(waiting))

            def change(stored: Object, phase: str = phase, waiting: str = waiting, key: PodKey = key) -> None:
                status = stored.setdefault("status", {})
                status["phase"] = phase
                status["running"] = running[key]
                conditions = status.setdefault("conditions", [])
                if waiting or conditions:
                    set_condition(
                        conditions,
                        "Unschedulable",
                        bool(waiting),
                        now,
                        "NotEnoughResources" if waiting else "Scheduled",
                        waiting,
                    )

            self.store.update("PodGroup", key[0], key[1], change)
