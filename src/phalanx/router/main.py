"""`phalanx router`: the router on its own, its endpoints from Kubernetes discovery.

Runs until SIGTERM or SIGINT, then stops discovery and drains (`Router.stop`: no new requests,
in-flight ones finish within the drain bound).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError

from phalanx.http import loop as event_loop
from phalanx.kube.config import ClusterConfigError, load_kubeconfig
from phalanx.router.auth import KeyFileError
from phalanx.router.endpoints import Endpoint
from phalanx.router.kubernetes import KubernetesDiscovery
from phalanx.router.kubeview import KubernetesState
from phalanx.router.server import Router, RouterConfig
from phalanx.router.static import BackendURLError, static_endpoints

log = logging.getLogger("phalanx.router")


class RouterStartError(Exception):
    """The router cannot start: no cluster configuration, or the address cannot be bound."""


@dataclass(frozen=True)
class RouterOptions:
    host: str = "127.0.0.1"  # loopback unless asked: a pod passes --host 0.0.0.0
    port: int = 8000
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    kubeconfig: str | None = None  # None: $KUBECONFIG, ~/.kube/config, or in-cluster
    backends: tuple[str, ...] = ()  # static discovery: these URLs instead of Kubernetes


def run_router(options: RouterOptions, config: RouterConfig | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per API request otherwise
    # What the format never shows is not collected per record either: with the access log on, the
    # caller lookup (a walk up the stack), thread and process names were a measured share of the
    # router's CPU per request (bench/router/results.md, issue 18).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if options.backends:
        if options.namespaces or options.kubeconfig:
            raise RouterStartError("--backend replaces Kubernetes discovery: drop --namespace/--kubeconfig")
        try:
            endpoints = static_endpoints(options.backends)
        except BackendURLError as exc:
            raise RouterStartError(str(exc)) from None
        return event_loop.run(serve(options, config or RouterConfig(), endpoints=endpoints))
    try:
        kubeconfig = load_kubeconfig(options.kubeconfig)
    except ClusterConfigError as exc:
        raise RouterStartError(str(exc)) from None
    return event_loop.run(serve(options, config or RouterConfig(), kubeconfig=kubeconfig))


async def serve(
    options: RouterOptions,
    config: RouterConfig,
    *,
    kubeconfig: KubeConfig | None = None,
    endpoints: list[Endpoint] | None = None,
) -> int:
    """Serves until SIGTERM/SIGINT with Kubernetes discovery, or with the static `endpoints`."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        router = Router(config)
    except KeyFileError as exc:  # every problem, each naming the file (and line) it is in
        raise RouterStartError(f"--api-keys: {exc}") from None
    client: AsyncClient | None = None
    discovery: KubernetesDiscovery | None = None
    try:
        if kubeconfig is not None:
            try:
                client = AsyncClient(kubeconfig, field_manager="phalanx-router")
            except (ConfigError, OSError, ValueError) as exc:  # no current context, certificate files missing
                raise RouterStartError(f"unusable cluster configuration: {exc}") from None
            discovery = KubernetesDiscovery(
                client, router.set_endpoints, options.namespaces, on_declared=router.set_declared
            )
            router.state_provider = KubernetesState(client, discovery, options.namespaces).provider()
        try:
            await router.start(options.host, options.port)
        except OSError as exc:
            raise RouterStartError(
                f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}"
            ) from None
        if discovery is not None:
            await discovery.start()
            scope = ", ".join(options.namespaces) or "all namespaces"
            log.info("discovering entry pods and ModelServings in %s", scope)
        else:
            router.set_endpoints(endpoints or [])
            log.info("routing to %s", ", ".join(ep.url for ep in endpoints or []))
        await stopping.wait()
        log.info("stopping: draining in-flight requests")
    finally:
        if discovery is not None:
            await discovery.close()
        await router.stop()
        if client is not None:
            await client.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
