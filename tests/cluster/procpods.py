"""Process-backed pods: a kubelet for chosen nodes of the test control plane that runs real processes.

KWOK fakes only nodes annotated ``kwok.x-k8s.io/node=fake``. The nodes made here carry the label
``phalanx.dev/process-node=true`` and no such annotation, so KWOK leaves them alone; a
`ProcessKubelet` plays their kubelet instead. For every pod bound to one of them it runs the containers
as local processes with the local runtime's `PodWorker` (command/args/env as a kubelet builds them,
restart policy with back-off, real startup/readiness/liveness probes), on a loopback address of its
own that it writes as the pod IP through the status subresource, with phase and conditions as a
kubelet reports them. A pod being deleted gets SIGTERM, SIGKILL after its grace period, and is then
removed (a delete with grace 0, as a kubelet finishes one). It renews the nodes' Ready heartbeat so
the node-lifecycle controller keeps them schedulable.

It runs in a thread with its own event loop (the cluster tests are synchronous); `stop()` ends every
process it started and fails if one is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Node, Pod, Service
from lightkube.types import PatchType

from phalanx.controller.observed import format_time
from phalanx.runtimes.local.backoff import BackoffPolicy
from phalanx.runtimes.local.kubelet import PodKey, PodWorker
from phalanx.runtimes.local.network import AddressPool, resolve_in_namespace
from phalanx.runtimes.local.procs import group_alive, signal_group
from tests.cluster.controlplane import ControlPlane, wait_for

log = logging.getLogger("tests.procpods")

Object = dict[str, Any]
PROCESS_NODE_LABEL = "phalanx.dev/process-node"
POLL = 0.25  # how often the bound pods are listed
HEARTBEAT = 10.0  # the node monitor grace period of the test control plane is 40 s
# Crash-loop back-off short enough for a test, as on `phalanx up`.
BACKOFF = BackoffPolicy(base=0.5, cap=5.0, reset_after=30.0)
STOP_GRACE = 5.0  # at teardown: seconds between SIGTERM and SIGKILL
TRANSIENT = (ApiError, httpx2.HTTPError, OSError)
_DOTTED = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)+")


# -- pure parts ------------------------------------------------------------------------------------


def unresolved_names(values: Iterable[str], namespace: str) -> list[str]:
    """In-cluster names of `namespace` (``<x>.<namespace>[.svc[.cluster.local]]`` and longer) left in
    `values` after resolution: the pod must wait, as no DNS would ever answer them."""
    found = []
    for value in values:
        for name in _DOTTED.findall(value):
            labels = name.split(".")
            if namespace in labels[1:] and labels[-1] in (namespace, "svc", "local"):
                found.append(name)
    return found


def process_node(name: str, labels: dict[str, str], now: float) -> Object:
    """A node no KWOK controller selects, Ready, with room for any test pod (no GPUs: engines simulate)."""
    capacity = {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                PROCESS_NODE_LABEL: "true",
                **labels,
            },
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "conditions": [ready_condition(now)],
        },
    }


def ready_condition(now: float) -> Object:
    stamp = format_time(now)
    return {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "process kubelet is posting ready status",
        "lastHeartbeatTime": stamp,
        "lastTransitionTime": stamp,
    }


def plain_env_values(pod: Object) -> list[str]:
    spec = pod.get("spec") or {}
    return [
        str(item.get("value", ""))
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        for item in container.get("env") or []
        if "valueFrom" not in item
    ]


# -- the kubelet -----------------------------------------------------------------------------------


class ProcessKubelet:
    """Plays the kubelet of the process nodes; see the module docstring. Implements `kubelet.Host`."""

    def __init__(self, cp: ControlPlane, workdir: Path) -> None:
        self.cp = cp
        self.workdir = workdir
        self.nodes: set[str] = set()
        self.addresses = AddressPool()
        self.events: list[str] = []  # "namespace/pod reason: message", for diagnostics
        self.errors: list[str] = []
        self._pods: dict[PodKey, Object] = {}
        self._services: dict[str, list[Object]] = {}
        self._workers: dict[PodKey, PodWorker] = {}
        self._done: set[str] = set()  # uids whose containers will not run again
        self._removing: set[str] = set()
        self._pending: dict[PodKey, tuple[str, Object]] = {}
        self._pgids: set[int] = set()
        self._every_pgid: set[int] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),))
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._client: AsyncClient | None = None

    # -- the test's side (any thread) ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def add_node(self, name: str, labels: dict[str, str] | None = None) -> str:
        """Registers a process node and waits until the scheduler may use it."""
        node = process_node(name, labels or {}, time.time())
        client = self.cp.client()
        client.create(from_dict(node))
        client.patch(Node.Status, name, {"status": node["status"]}, patch_type=PatchType.MERGE)
        self.nodes.add(name)
        wait_for(f"process node {name} Ready", lambda: self.cp.node_ready(name), timeout=60)
        return name

    def pool(self, namespace: str, count: int) -> str:
        """`count` process nodes labelled with a pool only this namespace's pods select; the pool."""
        pool = f"process-{namespace}"
        for index in range(count):
            self.add_node(f"{namespace}-p{index}", {"phalanx.dev/pool": pool})
        return pool

    def pids(self, namespace: str | None = None, name: str | None = None) -> set[int]:
        """Process groups of containers running now (of one pod, when named)."""
        workers = list(self._workers.items())
        return {
            pgid
            for key, worker in workers
            if namespace is None or key == (namespace, name)
            for pgid in worker.pids()
        }

    def stop(self) -> None:
        """Stops every container (SIGTERM, SIGKILL after STOP_GRACE) and checks that none is left."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(STOP_GRACE + 30)
        left = [pgid for pgid in self._every_pgid if group_alive(pgid)]
        for pgid in left:
            signal_group(pgid, signal.SIGKILL)
        for name in self.nodes:
            self.cp.delete_node(name)
        if not self._loop.is_closed() and not self._thread.is_alive():
            self._loop.close()
        if left:
            raise RuntimeError(f"process kubelet: container process groups outlived it: {left}")

    # -- kubelet.Host --------------------------------------------------------------------------------

    def publish(self, key: PodKey, uid: str, status: Object) -> None:
        self._pending[key] = (uid, status)
        self._wake.set()

    def pod_event(self, key: PodKey, type_: str, reason: str, message: str) -> None:
        self.events.append(f"{key[0]}/{key[1]} {type_} {reason}: {message}")

    def resolve(self, namespace: str, value: str) -> str:
        pods = [pod for key, pod in self._pods.items() if key[0] == namespace]
        return resolve_in_namespace(namespace, value, self._services.get(namespace, []), pods)

    def track(self, pgid: int) -> None:
        self._pgids.add(pgid)
        self._every_pgid.add(pgid)

    def untrack(self, pgid: int) -> None:
        self._pgids.discard(pgid)

    def log_dir(self, namespace: str, pod: str) -> Path:
        return self.workdir / "pods" / namespace / pod

    def processes_gone(self, key: PodKey) -> None:
        pass

    def finished(self, key: PodKey, uid: str) -> None:
        worker = self._workers.get(key)
        if worker is not None and worker.uid == uid:
            del self._workers[key]
        self._done.add(uid)
        self._pending.pop(key, None)
        asyncio.get_running_loop().create_task(self._remove(key, uid))

    # -- the loop ------------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._client = AsyncClient(
            KubeConfig.from_file(self.cp.kubeconfig),
            timeout=httpx2.Timeout(15.0),
            field_manager="phalanx-process-kubelet",
        )
        tasks = [asyncio.create_task(self._publisher()), asyncio.create_task(self._heartbeat())]
        try:
            while not self._stop.is_set():
                try:
                    await self._sync()
                except TRANSIENT as exc:
                    self.errors.append(f"sync: {exc!r}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), POLL)
        finally:
            await self._stop_all()
            rest = [*tasks, *(t for t in asyncio.all_tasks() if t is not asyncio.current_task())]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self._client.close()

    async def _stop_all(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            worker.terminate(STOP_GRACE)
        running = [w.task for w in workers if w.task is not None]
        if running:
            _, late = await asyncio.wait(running, timeout=STOP_GRACE + 10)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _list(self, node: str) -> list[Object]:
        assert self._client is not None
        found = []
        async for pod in self._client.list(Pod, namespace="*", fields={"spec.nodeName": node}):
            found.append(pod.to_dict())
        return found

    async def _sync(self) -> None:
        assert self._client is not None
        listed: dict[PodKey, Object] = {}
        for node in list(self.nodes):
            for pod in await self._list(node):
                listed[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod
        for namespace in {key[0] for key in listed}:
            services = self._client.list(Service, namespace=namespace)
            self._services[namespace] = [service.to_dict() async for service in services]
        for key, pod in listed.items():
            known = self.addresses.known(*key)
            if known:  # what was published may not have come back yet
                pod.setdefault("status", {})["podIP"] = known
        self._pods = listed
        for key, worker in list(self._workers.items()):
            pod = listed.get(key)
            if pod is None or pod["metadata"]["uid"] != worker.uid:
                worker.terminate()  # deleted at once, or replaced under the same name
        for key, pod in listed.items():
            self._sync_pod(key, pod)

    def _sync_pod(self, key: PodKey, pod: Object) -> None:
        metadata = pod["metadata"]
        uid = metadata["uid"]
        worker = self._workers.get(key)
        if metadata.get("deletionTimestamp"):
            if worker is not None and worker.uid == uid:
                grace = metadata.get("deletionGracePeriodSeconds")
                worker.terminate(None if grace is None else float(grace))
            elif worker is None:
                asyncio.get_running_loop().create_task(self._remove(key, uid))
            return
        if worker is not None or uid in self._done:
            return
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        pod.setdefault("status", {})["podIP"] = self.addresses.address(*key)
        values = [self.resolve(key[0], value) for value in plain_env_values(pod)]
        if unresolved_names(values, key[0]):
            return  # its Service or the pod it names has no address yet: try again next pass
        worker = PodWorker(self, pod, (), BACKOFF)
        self._workers[key] = worker
        self.pod_event(key, "Normal", "Scheduled", f"running on {pod['spec'].get('nodeName')} as processes")
        worker.start()

    async def _remove(self, key: PodKey, uid: str) -> None:
        """Removes a pod whose processes are gone once it is being deleted (grace 0, as a kubelet does)."""
        pod = self._pods.get(key)
        if uid in self._removing or pod is None or pod["metadata"]["uid"] != uid:
            return
        if not pod["metadata"].get("deletionTimestamp"):
            return
        assert self._client is not None
        self._removing.add(uid)
        try:
            current = await self._client.get(Pod, key[1], namespace=key[0])
            if current.metadata is not None and current.metadata.uid == uid:
                await self._client.delete(Pod, key[1], namespace=key[0], grace_period=0)
        except ApiError as exc:
            if exc.status.code != 404:
                self.errors.append(f"remove {key}: {exc!r}")
        except TRANSIENT as exc:
            self.errors.append(f"remove {key}: {exc!r}")
        finally:
            self._removing.discard(uid)

    async def _publisher(self) -> None:
        """Writes the latest status of each pod; a write for a pod replaced since is refused (uid)."""
        assert self._client is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            for (namespace, name), (uid, status) in batch.items():
                # null removes a reason the pod no longer has (a merge patch keeps what it omits)
                body = {"metadata": {"uid": uid}, "status": {"reason": None, "message": None, **status}}
                try:
                    await self._client.patch(
                        Pod.Status, name, body, namespace=namespace, patch_type=PatchType.MERGE
                    )
                except ApiError as exc:
                    if exc.status.code not in (404, 409, 422):
                        self.errors.append(f"status of {namespace}/{name}: {exc!r}")
                        self._pending.setdefault((namespace, name), (uid, status))
                except TRANSIENT as exc:
                    self.errors.append(f"status of {namespace}/{name}: {exc!r}")
                    self._pending.setdefault((namespace, name), (uid, status))
            if self._pending:
                self._wake.set()
                await asyncio.sleep(0.2)

    async def _heartbeat(self) -> None:
        assert self._client is not None
        while True:
            for name in list(self.nodes):
                # Merged by type: lastTransitionTime stays.
                beat = {"type": "Ready", "status": "True", "lastHeartbeatTime": format_time(time.time())}
                patch = {"status": {"conditions": [beat]}}
                try:
                    await self._client.patch(Node.Status, name, patch, patch_type=PatchType.STRATEGIC)
                except TRANSIENT as exc:
                    self.errors.append(f"heartbeat of {name}: {exc!r}")
            await asyncio.sleep(HEARTBEAT)


@contextlib.contextmanager
def process_kubelet(cp: ControlPlane, workdir: Path) -> Iterator[ProcessKubelet]:
    kubelet = ProcessKubelet(cp, workdir)
    kubelet.start()
    try:
        yield kubelet
    finally:
        kubelet.stop()
        print("process kubelet events:\n" + "\n".join(kubelet.events[-200:]))
        if kubelet.errors:
            print("process kubelet errors:\n" + "\n".join(kubelet.errors[-50:]))
