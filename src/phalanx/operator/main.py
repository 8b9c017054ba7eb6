"""Starts the operator: cluster config, logging, signals; exits 1 when leadership is lost."""

from __future__ import annotations

import asyncio
import logging
import signal

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

from phalanx.http import loop as event_loop
from phalanx.kube.config import ClusterConfigError, load_kubeconfig
from phalanx.operator.manager import Operator, OperatorOptions


class OperatorStartError(Exception):
    """No usable cluster configuration; the message says where it looked."""


def run_operator(options: OperatorOptions, kubeconfig: str | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per API request otherwise
    try:
        config = load_kubeconfig(kubeconfig)
    except ClusterConfigError as exc:
        raise OperatorStartError(str(exc)) from None
    return event_loop.run(_run(config, options))


async def _run(config: KubeConfig, options: OperatorOptions) -> int:
    client = AsyncClient(config, field_manager="phalanx")
    operator = Operator(client, options)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, operator.stopping.set)
    try:
        return await operator.run()
    finally:
        await client.close()
