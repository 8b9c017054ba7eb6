"""The elector against a real HTTP server on loopback that answers with Kubernetes errors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lightkube import AsyncClient, KubeConfig

from phalanx.operator.leader import Elector, Timing

LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/phalanx-operator"
FAST = Timing(lease_duration=3.0, renew_deadline=0.3, retry_period=0.05)


def status(code: int, reason: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    body["message"] = f"{reason.lower()} by the test server"
    return answer(body, code)


def answer(body: dict[str, Any], code: int = 200) -> web.Response:
    """JSON as the API server sends it: a bare application/json, which lightkube decodes into ApiError."""
    return web.Response(
        body=json.dumps(body).encode(), status=code, headers={"Content-Type": "application/json"}
    )


class Api:
    """Answers GET of the Lease with `get`, and PUT with `put`: each a status code, or 200 with a lease."""

    def __init__(self, get: int, put: int = 200) -> None:
        self.get, self.put = get, put
        self.puts = 0

    def lease(self) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "phalanx-operator", "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "holderIdentity": "me",
                "leaseDurationSeconds": 3,
                "renewTime": "2026-01-01T00:00:00.000000Z",
            },
        }

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "PUT":
            self.puts += 1
            return status(409, "Conflict") if self.put == 409 else answer(self.lease())
        if self.get == 200:
            return answer(self.lease())
        return status(self.get, {403: "Forbidden", 503: "ServiceUnavailable"}[self.get])


async def client_for(api: Api) -> AsyncIterator[AsyncClient]:
    app = web.Application()
    app.router.add_route("*", LEASE, api.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.port}"}}],
            "users": [{"name": "op", "user": {"token": "t"}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "op"}}],
            "current-context": "t",
        }
    )
    client = AsyncClient(config)
    try:
        yield client
    finally:
        await client.close()
        await server.close()


async def run_for(elector: Elector, seconds: float) -> None:
    task = asyncio.create_task(elector.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_forbidden_lease_is_a_warning_that_names_the_status(caplog: pytest.LogCaptureFixture) -> None:
    async for client in client_for(Api(get=403)):
        elector = Elector(client, name="phalanx-operator", namespace="default", identity="me", timing=FAST)
        with caplog.at_level(logging.DEBUG, logger="phalanx.operator"):
            await run_for(elector, 0.3)
        assert not elector.leading.is_set()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and warnings[0] == "lease default/phalanx-operator: 403 forbidden by the test server"


async def test_a_lost_race_is_routine_but_a_leader_that_keeps_losing_steps_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Api(get=200)
    async for client in client_for(api):
        elector = Elector(client, name="phalanx-operator", namespace="default", identity="me", timing=FAST)
        task = asyncio.create_task(elector.run())
        for _ in range(100):
            if elector.leading.is_set():
                break
            await asyncio.sleep(0.02)
        assert elector.leading.is_set()
        api.put = 409  # every renewal now loses a race to another writer
        with caplog.at_level(logging.DEBUG, logger="phalanx.operator"):
            await asyncio.wait_for(elector.lost.wait(), 5.0)
        await task
    conflicts = [r for r in caplog.records if "409" in r.getMessage()]
    assert conflicts and all(r.levelno == logging.DEBUG for r in conflicts)
    assert any("stepping down" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
