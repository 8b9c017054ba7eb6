"""The process kubelet: runs one pod's containers as child processes and writes its status.

Each container is one process in its own process group (so a shell's children go with it), set
to die with the runtime (PR_SET_PDEATHSIG) and recorded for the reaper. Status fields follow a
real kubelet's: phase, conditions with lastTransitionTime, containerStatuses with state,
lastState and restartCount, so the controller core reads local pods exactly like cluster pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from phalanx.api.names import is_dns1123_label
from phalanx.controller.observed import format_time
from phalanx.runtimes.local.backoff import BackoffPolicy, RestartBackoff
from phalanx.runtimes.local.env import HOST_IP, ConfigError, command_line, container_env
from phalanx.runtimes.local.logs import open_run_log
from phalanx.runtimes.local.probes import ProbeKind, ProbeSpec, ProbeState, check, parse_probe
from phalanx.runtimes.local.procs import die_with, group_alive, signal_group, wait_group_gone

log = logging.getLogger("phalanx.runtimes.local")

Object = dict[str, Any]
PodKey = tuple[str, str]
# Variables of the runtime's own environment a pod must not inherit.
_NOT_INHERITED = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
# After SIGKILL, how long to wait for a group's processes to disappear.
_KILL_WAIT = 3.0


class Host(Protocol):
    """What a pod worker needs from the runtime."""

    def publish(self, key: PodKey, uid: str, status: Object) -> None: ...
    def pod_event(self, key: PodKey, type_: str, reason: str, message: str) -> None: ...
    def resolve(self, namespace: str, value: str) -> str: ...
    def track(self, pgid: int) -> None: ...
    def untrack(self, pgid: int) -> None: ...
    def log_dir(self, namespace: str, pod: str) -> Path: ...
    def processes_gone(self, key: PodKey) -> None: ...
    def finished(self, key: PodKey, uid: str) -> None: ...


def set_condition(
    conditions: list[Object], kind: str, value: bool, now: float, reason: str = "", message: str = ""
) -> None:
    """Upserts a pod condition; lastTransitionTime moves only when the status flips."""
    status = "True" if value else "False"
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != status:
                condition["lastTransitionTime"] = format_time(now)
            condition["status"] = status
            break
    else:
        condition = {"type": kind, "status": status, "lastTransitionTime": format_time(now)}
        conditions.append(condition)
    for key, text in (("reason", reason), ("message", message)):
        if text:
            condition[key] = text
        else:
            condition.pop(key, None)


def exit_code(returncode: int) -> int:
    """Shell convention: a process killed by signal N exits 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def restarts(policy: str, code: int, init: bool) -> bool:
    if init:
        return code != 0 and policy != "Never"
    return policy == "Always" or (policy == "OnFailure" and code != 0)


@dataclass
class Container:
    spec: Object
    init: bool
    backoff: RestartBackoff
    probes: dict[ProbeKind, ProbeSpec] = field(default_factory=dict)
    restart_count: int = 0
    state: Object = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    last_state: Object = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    pgid: int | None = None
    done: bool = False  # will not run again
    killing: bool = False  # failed a liveness or startup probe: on its way out, never ready again

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    def status(self) -> Object:
        out: Object = {
            "name": self.name,
            "image": str(self.spec.get("image", "")),
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if not self.init:
            out["started"] = self.started
        if self.pgid is not None:
            out["containerID"] = f"local://{self.pgid}"
        return out


class PodWorker:
    def __init__(
        self,
        host: Host,
        pod: Object,
        gpu_ids: tuple[int, ...],
        backoff: BackoffPolicy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        metadata, spec = pod["metadata"], pod.get("spec") or {}
        self.namespace, self.name, self.uid = metadata["namespace"], metadata["name"], metadata["uid"]
        self.key: PodKey = (self.namespace, self.name)
        self.spec = spec
        # What the downward API reads; env is fixed when a container is created, as on a kubelet.
        self.labels = dict(metadata.get("labels") or {})
        self.annotations = dict(metadata.get("annotations") or {})
        self.ip = str((pod.get("status") or {}).get("podIP") or "")
        self.gpu_ids = gpu_ids
        self.clock = clock
        self.policy = str(spec.get("restartPolicy") or "Always")
        self.grace = float(spec.get("terminationGracePeriodSeconds", 30))
        self.conditions: list[Object] = [dict(c) for c in (pod.get("status") or {}).get("conditions") or []]
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.start_time = clock()
        # Sidecar init containers (restartPolicy Always) run alongside the main containers.
        inits = spec.get("initContainers") or []
        self.init_containers = [
            Container(c, True, RestartBackoff(backoff)) for c in inits if c.get("restartPolicy") != "Always"
        ]
        sidecars = [c for c in inits if c.get("restartPolicy") == "Always"]
        self.containers = [
            Container(c, False, RestartBackoff(backoff)) for c in [*sidecars, *(spec.get("containers") or [])]
        ]
        self._terminating = asyncio.Event()
        self._deadline = 0.0
        self.task: asyncio.Task[None] | None = None
        self._base_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.create_task(self._main(), name=f"pod {self.namespace}/{self.name}")

    def terminate(self, grace: float | None = None) -> None:
        """Starts a graceful stop: SIGTERM now, SIGKILL after `grace` seconds (the pod's by default)."""
        seconds = self.grace if grace is None else grace
        deadline = time.monotonic() + max(seconds, 0.0)
        if self._terminating.is_set():
            self._deadline = min(self._deadline, deadline)
            return
        self._deadline = deadline
        self._terminating.set()

    def stopping(self) -> bool:
        return self._terminating.is_set()

    def pids(self) -> list[int]:
        return [
            c.pgid
            for c in [*self.init_containers, *self.containers]
            if c.pgid is not None and "running" in c.state
        ]

    def kill_now(self) -> None:
        """Last resort (cancelled worker, closing runtime): SIGKILL every group still running.

        Only running ones: a finished container's group id may belong to an unrelated process now.
        """
        for pgid in self.pids():
            signal_group(pgid, signal.SIGKILL)

    async def _main(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            self.kill_now()
            raise
        except Exception as exc:  # a bug here must not leave processes behind
            log.exception("pod %s/%s worker failed", self.namespace, self.name)
            self._fail("RuntimeError", f"local runtime error: {exc}")
        finally:
            self.kill_now()
            self.host.processes_gone(self.key)
        await self._terminating.wait()
        self.host.finished(self.key, self.uid)

    # --- status --------------------------------------------------------------------------------

    def publish(self) -> None:
        now = self.clock()
        pending = [c.name for c in self.init_containers if not c.done]
        initialized = all(
            c.done and c.state.get("terminated", {}).get("exitCode") == 0 for c in self.init_containers
        )
        set_condition(
            self.conditions,
            "Initialized",
            initialized,
            now,
            "" if initialized else "ContainersNotInitialized",
            "" if initialized else f"containers with incomplete status: [{' '.join(pending)}]",
        )
        unready = [c.name for c in self.containers if not c.ready]
        terminal = self.phase in ("Succeeded", "Failed")
        reason = "PodCompleted" if terminal else ("ContainersNotReady" if unready else "")
        message = "" if terminal or not unready else f"containers with unready status: [{' '.join(unready)}]"
        for kind in ("ContainersReady", "Ready"):
            set_condition(self.conditions, kind, not unready and not terminal, now, reason, message)
        order = {"PodScheduled": 0, "Initialized": 1, "ContainersReady": 2, "Ready": 3}
        self.conditions.sort(key=lambda c: order.get(c["type"], 9))
        status: Object = {
            "phase": self.phase,
            "conditions": [dict(c) for c in self.conditions],
            "hostIP": HOST_IP,
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}] if self.ip else [],
            "startTime": format_time(self.start_time),
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.reason:
            status["reason"], status["message"] = self.reason, self.message
        self.host.publish(self.key, self.uid, status)

    def _event(self, type_: str, reason: str, message: str) -> None:
        self.host.pod_event(self.key, type_, reason, message)

    def _fail(self, reason: str, message: str, container: Container | None = None) -> None:
        self.phase, self.reason, self.message = "Failed", reason, message
        if container is not None:
            container.state = {"waiting": {"reason": reason, "message": message}}
        self._event("Warning", "Failed", message)
        self.publish()

    # --- running -------------------------------------------------------------------------------

    def _env(self, container: Container) -> dict[str, str]:
        return container_env(
            container.spec,
            pod_name=self.name,
            namespace=self.namespace,
            pod_ip=self.ip,
            gpu_ids=self.gpu_ids,
            resolve=lambda value: self.host.resolve(self.namespace, value),
            labels=self.labels,
            annotations=self.annotations,
        )

    async def _run(self) -> None:
        if not self.containers:
            self._fail("CreateContainerConfigError", "the pod has no containers")
            return
        for container in [*self.init_containers, *self.containers]:
            try:
                self._validate_one(container)
            except ConfigError as exc:
                self._fail("CreateContainerConfigError", str(exc), container)
                return
        self.publish()
        for container in self.init_containers:
            succeeded = await self._container_loop(container)
            if not succeeded:
                if not self.stopping():
                    self.phase = "Failed"
                    self.publish()
                return
        self.phase = "Running"
        loops = [asyncio.create_task(self._container_loop(c)) for c in self.containers]
        try:
            results = await asyncio.gather(*loops)
        finally:
            for loop in loops:
                loop.cancel()
        if not self.stopping():
            self.phase = "Succeeded" if all(results) else "Failed"
            self.publish()

    def _validate_one(self, container: Container) -> None:
        if not is_dns1123_label(container.name):  # it names the container's log file
            raise ConfigError(f"container name {container.name!r} must be a DNS-1123 label")
        command_line(container.spec, self._env(container))
        if container.init:
            return
        kinds: tuple[ProbeKind, ...] = ("startup", "liveness", "readiness")
        for kind in kinds:
            probe = container.spec.get(f"{kind}Probe")
            if probe:
                container.probes[kind] = parse_probe(probe, container.spec, kind)

    async def _container_loop(self, container: Container) -> bool:
        """Runs a container until it will not be restarted; True if it ended successfully."""
        while not self.stopping():
            began = time.monotonic()
            code = await self._run_once(container)
            ran_for = time.monotonic() - began
            if self.stopping():
                break
            if not restarts(self.policy, code, container.init):
                container.done = True
                self.publish()
                return code == 0
            delay = container.backoff.next_delay(ran_for)
            message = f"back-off {delay:g}s restarting failed container={container.name} pod={self.name}"
            container.last_state = container.state
            container.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            self._event("Warning", "BackOff", f"Back-off restarting failed container {container.name}")
            self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._terminating.wait(), delay)
            if self.stopping():
                break
            container.restart_count += 1
        container.done = True
        return False

    async def _run_once(self, container: Container) -> int:
        env = self._env(container)
        argv = command_line(container.spec, env)
        log_fd = open_run_log(self.host.log_dir(self.namespace, self.name), container.name)
        working_dir = container.spec.get("workingDir") or None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=working_dir,
                env={**self._base_env, **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with(os.getpid()),
            )
        except OSError as exc:
            message = f"cannot start {argv[0]}" + (f" in {working_dir}" if working_dir else "")
            message += f": {exc.strerror or exc}"
            os.write(log_fd, f"phalanx: {message}\n".encode())
            container.last_state = (
                container.state if "terminated" in container.state else container.last_state
            )
            container.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "finishedAt": format_time(self.clock()),
                }
            }
            self._event("Warning", "Failed", f"Error: {message}")
            self.publish()
            return 128
        finally:
            os.close(log_fd)
        container.pgid = proc.pid  # session leader: its pid is the group id
        self.host.track(proc.pid)
        started_at = format_time(self.clock())
        if "terminated" in container.state:
            container.last_state = container.state
        container.state = {"running": {"startedAt": started_at}}
        container.killing = False
        container.started = "startup" not in container.probes
        container.ready = container.started and not container.init and "readiness" not in container.probes
        self._event("Normal", "Started", f"Started container {container.name}")
        self.publish()
        waiter = asyncio.create_task(proc.wait())
        stop = asyncio.create_task(self._terminating.wait())
        probes = asyncio.create_task(self._probe(container)) if container.probes else None
        try:
            await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                await self._stop_group(proc.pid, waiter)
            code = exit_code(await waiter)
        finally:
            for task in (stop, probes):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            # The main process is gone; like a container's cgroup, nothing else of it may stay.
            if group_alive(proc.pid):
                signal_group(proc.pid, signal.SIGKILL)
                if not await wait_group_gone(proc.pid, _KILL_WAIT):
                    log.warning(
                        "process group %d of %s/%s outlived SIGKILL", proc.pid, self.namespace, self.name
                    )
            self.host.untrack(proc.pid)
        container.ready = False
        container.state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started_at,
                "finishedAt": format_time(self.clock()),
            }
        }
        self.publish()
        return code

    async def _stop_group(self, pgid: int, waiter: asyncio.Task[int]) -> None:
        signal_group(pgid, signal.SIGTERM)
        remaining = self._deadline - time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), max(remaining, 0.0))
        except TimeoutError:
            signal_group(pgid, signal.SIGKILL)

    # --- probes --------------------------------------------------------------------------------

    async def _probe(self, container: Container) -> None:
        started = asyncio.Event()
        if container.started:
            started.set()
        async with asyncio.TaskGroup() as group:
            for kind, spec in container.probes.items():
                group.create_task(self._probe_loop(container, kind, spec, started))

    async def _spawn_exec(self, argv: list[str], env: Mapping[str, str]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *argv,
            env={**self._base_env, **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with(os.getpid()),
        )

    async def _probe_loop(
        self, container: Container, kind: ProbeKind, spec: ProbeSpec, started: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        if kind != "startup":
            await started.wait()
        state = ProbeState(spec, kind)
        env = self._env(container)
        await asyncio.sleep(spec.initial_delay)
        while True:
            began = loop.time()
            ok, detail = await check(spec, self.ip, env, self._spawn_exec)
            changed = state.observe(ok)
            label = kind.capitalize()
            if kind == "readiness" and changed:
                container.ready = bool(state.result) and not container.killing
                if not state.result:
                    self._event("Warning", "Unhealthy", f"{label} probe failed: {detail}")
                self.publish()
            elif kind == "startup" and state.result is True:
                container.started = True
                container.ready = "readiness" not in container.probes
                started.set()
                self.publish()
                return
            elif kind != "readiness" and state.result is False:
                self._event("Warning", "Unhealthy", f"{label} probe failed: {detail}")
                self._event(
                    "Normal", "Killing", f"Container {container.name} failed {kind} probe, will be restarted"
                )
                # A container being killed takes no new traffic: a stopped engine continued during its
                # grace period answered a queued readiness probe and drew requests, then exited.
                container.killing = True
                container.ready = False
                self.publish()
                await self._kill_container(container)
                return
            await asyncio.sleep(max(began + spec.period - loop.time(), 0.0))

    async def _kill_container(self, container: Container) -> None:
        """SIGTERM, then SIGKILL after the grace period; the container's loop sees it exit."""
        pgid = container.pgid
        if pgid is None:
            return
        signal_group(pgid, signal.SIGTERM)
        await asyncio.sleep(self.grace)
        signal_group(pgid, signal.SIGKILL)
