"""`phalanx up`: the controller, the local runtime and the router in one foreground process.

Other terminals talk to it over a Unix socket in the state directory (`control.sock`): status,
apply, scale, logs and down. The directory is private (0700, ours), the socket 0600, and only
callers of the same uid are served. Stopping it (Ctrl-C, SIGTERM, `phalanx down`) stops the
router, then terminates every pod; the runtime's reaper kills the pods even if this process dies
outright, and if the reaper itself is lost for good, `up` stops rather than run pods unguarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from phalanx.api import labels as L
from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.modelserving import ModelServing
from phalanx.controller.recovery import Settings
from phalanx.embedded.autoscaler import Autoscaler
from phalanx.embedded.control import ControlApi
from phalanx.embedded.peers import same_user_only
from phalanx.observe.collector import Snapshot, StatusCollector
from phalanx.router.declared import declared_by_servings
from phalanx.router.pods import endpoints_from_pods
from phalanx.router.server import Router, RouterConfig
from phalanx.router.webui import StateProvider
from phalanx.router.webview import pod_record
from phalanx.runtimes.local.runtime import LocalRuntime
from phalanx.runtimes.local.statedir import StateDirError, ensure_private_dir
from phalanx.runtimes.local.watchdog import RestartPolicy
from phalanx.runtimes.reconciler import Reconciler

log = logging.getLogger("phalanx.up")

CONTROL_SOCKET = "control.sock"
SOCKET_MODE = 0o600


class StartError(Exception):
    """`up` cannot start; the message says why and what to do."""


@dataclass
class UpOptions:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    gpus: int | None = None
    settings: Settings = field(default_factory=Settings)
    drain_timeout: float = 10.0
    reaper_policy: RestartPolicy = field(default_factory=RestartPolicy)


def default_state_dir() -> Path:
    configured = os.environ.get("PHALANX_STATE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "phalanx"


class Daemon:
    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.stopping = asyncio.Event()
        self.runtime: LocalRuntime | None = None
        self.router: Router | None = None
        self.reconciler: Reconciler | None = None
        self.autoscaler: Autoscaler | None = None
        self._control_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._owns_socket = False  # never remove a socket another `up` is answering on
        self.on_change: Callable[[], None] | None = None
        self.failure = ""  # why `up` stopped by itself (the reaper was lost)

    @property
    def socket_path(self) -> Path:
        return self.options.state_dir / CONTROL_SOCKET

    async def start(
        self, servings: list[ModelServing], policies: list[AutoscalingPolicy] | None = None
    ) -> None:
        options = self.options
        try:
            ensure_private_dir(options.state_dir)
        except StateDirError as exc:
            raise StartError(f"unsafe state directory: {exc}") from None
        await self._claim_socket()
        router = Router(RouterConfig())
        try:
            await router.start(options.host, options.port)
        except OSError as exc:
            raise StartError(
                f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}; "
                "choose another port with --port"
            ) from None
        self.router = router
        router.state_provider = StateProvider("up", self._web_snapshot)  # the web view (/ui)
        # ModelServing and AutoscalingPolicy status on the router's /metrics, as the operator exports it.
        router.metrics.registry.register(StatusCollector(self._status_snapshot))
        runtime = LocalRuntime(
            options.state_dir,
            gpus=options.gpus,
            reaper_policy=options.reaper_policy,
            on_unguarded=self._unguarded,
        )
        try:
            await runtime.start()
        except StateDirError as exc:
            raise StartError(f"unsafe state directory: {exc}") from None
        self.runtime = runtime
        self.reconciler = Reconciler(runtime, settings=options.settings, in_flight=self._in_flight)
        for ms in servings:
            await runtime.apply_serving(ms)
        self.autoscaler = Autoscaler(runtime, router.url)
        router.on_held = self.autoscaler.held_at_zero  # the first group starts at once, not next period
        for policy in policies or []:
            self.autoscaler.apply(policy)
        app = ControlApi(self).build_app()
        app.middlewares.insert(0, same_user_only(os.geteuid()))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._control_runner = runner
        await web.SockSite(runner, self._bind_socket()).start()
        self._tasks.append(asyncio.create_task(self._control_loop(), name="controller"))
        self._tasks.append(asyncio.create_task(self.autoscaler.run(self.stopping), name="autoscaler"))

    def _bind_socket(self) -> socket.socket:
        """The control socket, 0600 before it listens (whatever the umask; the directory is 0700 too)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.socket_path))
            self._owns_socket = True
            self.socket_path.chmod(SOCKET_MODE)
        except OSError as exc:
            sock.close()
            raise StartError(
                f"cannot open the control socket {self.socket_path}: {exc.strerror or exc}; "
                "pass a shorter or writable --state-dir"
            ) from None
        return sock

    def _unguarded(self, message: str) -> None:
        self.failure = message
        self.stopping.set()

    async def _claim_socket(self) -> None:
        """One `up` per state directory: refuse if another answers on the socket, clear a stale one."""
        path = self.socket_path
        if not os.path.lexists(path):
            return
        try:
            _reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # left by an `up` that died
            return
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        raise StartError(
            f"phalanx up is already running with state directory {self.options.state_dir}; "
            "stop it with `phalanx down`, or pass another --state-dir"
        )

    async def _control_loop(self) -> None:
        assert self.runtime is not None and self.reconciler is not None and self.router is not None
        while not self.stopping.is_set():
            try:
                wait = await self.reconciler.reconcile_all()
                self.router.set_endpoints(endpoints_from_pods(await self.all_pods()))
                # A ModelServing at zero replicas, or starting: its requests wait for its first group.
                servings = await self.runtime.list_servings()
                self.router.set_declared(declared_by_servings(ms.to_dict() for ms in servings))
            except Exception:
                log.exception("controller pass failed; retrying")
                wait = 1.0
            if self.on_change is not None:
                self.on_change()
            # Endpoints follow readiness promptly: wake at least once a second.
            if wait > 0:
                await self.runtime.wait_for_change(min(wait, 1.0))
            else:
                await asyncio.sleep(0)  # the kubelet, probes and router run between passes

    def _in_flight(self, namespace: str) -> dict[str, int]:
        """The router counts per endpoint (`namespace/pod`); the controller wants one namespace's pods."""
        assert self.router is not None
        prefix = namespace + "/"
        return {
            name.removeprefix(prefix): count
            for name, count in self.router.in_flight().items()
            if name.startswith(prefix)
        }

    async def all_pods(self) -> list[dict[str, Any]]:
        assert self.runtime is not None
        pods: list[dict[str, Any]] = []
        namespaces = {ms.namespace for ms in await self.runtime.list_servings()} or {"default"}
        for namespace in sorted(namespaces):
            pods += await self.runtime.list_objects("Pod", namespace, {})
        return [p for p in pods if L.NAME in (p.get("metadata", {}).get("labels") or {})]

    def _status_snapshot(self) -> Snapshot | None:
        if self.runtime is None:
            return None
        policies = self.autoscaler.policies() if self.autoscaler is not None else []
        return Snapshot(
            servings=[_plain(ms) for ms in self.runtime.store.list_servings()],
            policies=[_plain(p) for p in policies],
        )

    async def _web_snapshot(self) -> dict[str, Any]:
        """The web view's state: the status payload, empty while the runtime is starting."""
        return await self.status_payload() if self.runtime is not None else {}

    async def status_payload(self) -> dict[str, Any]:
        assert self.runtime is not None and self.router is not None
        servings = await self.runtime.list_servings()
        pods = []
        for obj in await self.all_pods():
            record = pod_record(obj)  # the fields the web view shares, plus what only `up` knows
            if record is None:
                continue
            record["gpus"] = self.runtime.pod_gpus(obj)
            record["pids"] = self.runtime.pod_pids(record["namespace"], record["name"])
            record["annotations"] = obj.get("metadata", {}).get("annotations") or {}
            # The ServingGroup revision, as the chart's PodMonitor labels the engines' series.
            record["revision"] = (obj.get("metadata", {}).get("labels") or {}).get(L.REVISION, "")
            pods.append(record)
        inventory = self.runtime.gpu_inventory()
        events = self.runtime.events()
        return {
            "router": {"url": self.router.url, "inFlight": self.router.in_flight()},
            "gpus": {"total": inventory.total, "free": inventory.free},
            "servings": [_plain(ms) for ms in servings],
            "policies": [
                _plain(p) for p in (self.autoscaler.policies() if self.autoscaler is not None else [])
            ],
            "pods": sorted(pods, key=lambda p: p["name"]),
            "events": [e.to_dict() for e in events[-50:]],
            "eventCount": self.runtime.store.events_recorded,
            "stateDir": str(self.options.state_dir),
            "pid": os.getpid(),
            "reaperPid": self.runtime.reaper_pid,
        }

    async def wait(self) -> None:
        await self.stopping.wait()

    async def stop(self) -> None:
        self.stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.router is not None:
            await self.router.stop(drain_timeout_s=self.options.drain_timeout)
        if self.runtime is not None:
            await self.runtime.close()
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None
        if self._owns_socket:
            self.socket_path.unlink(missing_ok=True)
            self._owns_socket = False


def _plain(obj: ModelServing | AutoscalingPolicy) -> dict[str, Any]:
    """An object in its JSON form, as the API server would hold it."""
    return obj.model_dump(by_alias=True, exclude_none=True, mode="json")
