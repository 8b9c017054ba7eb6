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

from phalanx.kube.config import ClusterConfigError, load_kubeconfig
from phalanx.router.kubernetes import KubernetesDiscovery
from phalanx.router.server import Router, RouterConfig

log = logging.getLogger("phalanx.router")


class RouterStartError(Exception):
    """The router cannot start: no cluster configuration, or the address cannot be bound."""


@dataclass(frozen=True)
class RouterOptions:
    host: str = "0.0.0.0"
    port: int = 8000
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    kubeconfig: str | None = None  # None: $KUBECONFIG, ~/.kube/config, or in-cluster


def run_router(options: RouterOptions, config: RouterConfig | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        kubeconfig = load_kubeconfig(options.kubeconfig)
    except ClusterConfigError as exc:
        raise RouterStartError(str(exc)) from None
    return asyncio.run(serve(kubeconfig, options, config or RouterConfig()))


async def serve(kubeconfig: KubeConfig, options: RouterOptions, config: RouterConfig) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        client = AsyncClient(kubeconfig, field_manager="phalanx-router")
    except (ConfigError, OSError, ValueError) as exc:  # no current context, certificate files missing
        raise RouterStartError(f"unusable cluster configuration: {exc}") from None
    router = Router(config)
    discovery = KubernetesDiscovery(client, router.set_endpoints, options.namespaces)
    try:
        try:
            await router.start(options.host, options.port)
        except OSError as exc:
            raise RouterStartError(
                f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}"
            ) from None
        await discovery.start()
        scope = ", ".join(options.namespaces) or "all namespaces"
        log.info("discovering entry pods and ModelServings in %s", scope)
        await stopping.wait()
        log.info("stopping: draining in-flight requests")
    finally:
        await discovery.close()
        await router.stop()
        await client.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
