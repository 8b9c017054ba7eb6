"""An informer of an optional resource whose CRD the API server does not serve reads it as empty
(readers such as the ModelDeployment reconcile would otherwise wait for a first list forever); any
other informer keeps waiting. Against the real API server's 404."""

from __future__ import annotations

import asyncio
import time

import pytest
from lightkube import AsyncClient
from lightkube.generic_resource import create_namespaced_resource

from phalanx.kube.errors import Backoff
from phalanx.kube.informer import Informer
from tests.cluster.test_kubernetes_runtime import client

__all__ = ["client"]  # a fixture, used by name

pytestmark = pytest.mark.cluster

# A resource no CRD in the test cluster defines: every list of it is a 404.
Widget = create_namespaced_resource("absent.phalanx.dev", "v1", "Widget", "widgets")


@pytest.mark.parametrize("absent_is_empty", [True, False])
async def test_a_resource_the_server_does_not_serve(client: AsyncClient, absent_is_empty: bool) -> None:
    changes: list[object] = []
    informer = Informer(
        client,
        Widget,
        None,
        changes.append,
        absent_is_empty=absent_is_empty,
        backoff=Backoff(initial=0.05, cap=0.2),
    )
    run = asyncio.get_running_loop().create_task(informer.run())
    try:
        deadline = time.monotonic() + 3.0
        while not informer.synced and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert informer.synced is absent_is_empty
        assert informer.objects == {}
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
