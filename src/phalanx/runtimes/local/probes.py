"""Container probes: the spec, Kubernetes' threshold state machine (pure), and the checks (thin I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from phalanx.runtimes.local.env import ConfigError

ProbeKind = Literal["startup", "liveness", "readiness"]
Action = Literal["httpGet", "tcpSocket", "exec"]


@dataclass(frozen=True)
class ProbeSpec:
    action: Action
    port: int = 0
    path: str = "/"
    host: str = ""  # empty: the pod IP
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


def _port(value: Any, container: Mapping[str, Any]) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        for port in container.get("ports") or []:
            if port.get("name") == value and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    raise ConfigError(f"container {container.get('name', '?')}: probe port {value!r} is not a declared port")


def parse_probe(probe: Mapping[str, Any], container: Mapping[str, Any], kind: ProbeKind) -> ProbeSpec:
    timing = {
        "initial_delay": float(probe.get("initialDelaySeconds", 0)),
        "period": float(probe.get("periodSeconds", 10)),
        "timeout": float(probe.get("timeoutSeconds", 1)),
        # Liveness and startup probes must use successThreshold 1 in Kubernetes.
        "success_threshold": int(probe.get("successThreshold", 1)) if kind == "readiness" else 1,
        "failure_threshold": int(probe.get("failureThreshold", 3)),
    }
    if "httpGet" in probe:
        http = probe["httpGet"] or {}
        headers = tuple((str(h.get("name")), str(h.get("value", ""))) for h in http.get("httpHeaders") or [])
        return ProbeSpec(
            action="httpGet",
            port=_port(http.get("port"), container),
            path=str(http.get("path") or "/"),
            host=str(http.get("host") or ""),
            scheme=str(http.get("scheme") or "HTTP").upper(),
            headers=headers,
            **timing,  # type: ignore[arg-type]
        )
    if "tcpSocket" in probe:
        tcp = probe["tcpSocket"] or {}
        port = _port(tcp.get("port"), container)
        return ProbeSpec(action="tcpSocket", port=port, host=str(tcp.get("host") or ""), **timing)  # type: ignore[arg-type]
    if "exec" in probe:
        command = tuple(str(c) for c in (probe["exec"] or {}).get("command") or [])
        if not command:
            raise ConfigError(f"container {container.get('name', '?')}: exec {kind} probe has no command")
        return ProbeSpec(action="exec", command=command, **timing)  # type: ignore[arg-type]
    handler = next(iter(k for k in probe if k in ("grpc",)), "no handler")
    raise ConfigError(
        f"container {container.get('name', '?')}: {kind} probe with {handler} is not supported locally "
        "(use httpGet, tcpSocket or exec)"
    )


class ProbeState:
    """Consecutive-result thresholds. `result` is None until decided (startup), else the verdict."""

    def __init__(self, spec: ProbeSpec, kind: ProbeKind) -> None:
        self.spec = spec
        # Liveness counts as passing until it fails; readiness as failing until it passes.
        self.result: bool | None = {"liveness": True, "readiness": False, "startup": None}[kind]
        self.successes = 0
        self.failures = 0

    def observe(self, ok: bool) -> bool:
        """Records one probe result; True when `result` changed."""
        before = self.result
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.spec.success_threshold:
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.spec.failure_threshold:
                self.result = False
        return self.result != before


async def check(spec: ProbeSpec, pod_ip: str, env: Mapping[str, str], spawn: Spawn) -> tuple[bool, str]:
    """Runs the probe once; (passed, what happened)."""
    host = spec.host or pod_ip
    try:
        if spec.action == "httpGet":
            return await _http(spec, host)
        if spec.action == "tcpSocket":
            return await _tcp(spec, host)
        return await _exec(spec, env, spawn)
    except TimeoutError:
        return False, f"timed out after {spec.timeout:g}s"
    except (OSError, aiohttp.ClientError) as exc:
        return False, str(exc) or type(exc).__name__


async def _http(spec: ProbeSpec, host: str) -> tuple[bool, str]:
    path = spec.path if spec.path.startswith("/") else "/" + spec.path
    url = f"{spec.scheme.lower()}://{host}:{spec.port}{path}"
    timeout = aiohttp.ClientTimeout(total=spec.timeout)
    connector = aiohttp.TCPConnector(force_close=True, ssl=False)
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
        session.get(url, headers=dict(spec.headers), allow_redirects=False) as response,
    ):
        ok = 200 <= response.status < 400
        return ok, f"HTTP probe {url} returned {response.status}"


async def _tcp(spec: ProbeSpec, host: str) -> tuple[bool, str]:
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, spec.port), spec.timeout)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"connected to {host}:{spec.port}"


Spawn = Callable[..., Any]


async def _exec(spec: ProbeSpec, env: Mapping[str, str], spawn: Spawn) -> tuple[bool, str]:
    proc: asyncio.subprocess.Process = await spawn(list(spec.command), env)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), spec.timeout)
    except BaseException:  # timed out, or the probe was cancelled because its container stopped
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.shield(proc.wait())
        raise
    text = output.decode(errors="replace").strip()[-200:] if output else ""
    return proc.returncode == 0, f"exec {spec.command[0]} exited {proc.returncode}" + (
        f": {text}" if text else ""
    )
