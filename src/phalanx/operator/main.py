"""Starts the operator: cluster config, logging, signals; exits 1 when leadership is lost."""

from __future__ import annotations

import asyncio
import logging
import signal

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError

from phalanx.operator.manager import Operator, OperatorOptions


class OperatorStartError(Exception):
    """No usable cluster configuration; the message says where it looked."""


def run_operator(options: OperatorOptions, kubeconfig: str | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    except (ConfigError, OSError) as exc:
        raise OperatorStartError(
            f"no cluster configuration ({exc}); pass --kubeconfig, set KUBECONFIG, or run in a pod "
            "with a service account"
        ) from None
    return asyncio.run(_run(config, options))


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
