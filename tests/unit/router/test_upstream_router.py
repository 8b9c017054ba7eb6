"""Through the router: an engine that closes its kept-alive connections costs the client nothing."""

from __future__ import annotations

import asyncio

import aiohttp

from phalanx.router.endpoints import Endpoint
from phalanx.router.server import Router, RouterConfig, running
from tests.unit.router.test_upstream import Backend, Handler, answer

COMPLETION = b'{"object":"text_completion","choices":[{"index":0,"text":"ok"}]}'


def closing_every_other(backend: Backend) -> Handler:
    """Answers with keep-alive, then drops the connection: at once after the first answer, and
    unanswered when a second request arrives on a connection (a close racing that request)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await backend.read_request(reader)
        writer.write(answer(COMPLETION))
        await writer.drain()
        if backend.connections % 2:
            return  # closed while idle
        await backend.read_request(reader)
        writer.transport.abort()  # closed as the next request came in

    return handler


async def test_kept_alive_connections_the_engine_closes_are_replaced_unseen() -> None:
    config = RouterConfig(scrape_interval_s=None, health_check_interval_s=None, access_log=False)
    async with (
        Backend(closing_every_other) as backend,
        running(Router(config)) as router,
        aiohttp.ClientSession() as http,
    ):
        router.set_endpoints(
            [Endpoint(name="e", url=backend.url, serving="demo", group_index=0, models=("m",))]
        )
        for _ in range(6):
            async with http.post(f"{router.url}/v1/completions", json={"model": "m", "prompt": "x"}) as resp:
                assert resp.status == 200
                assert await resp.read() == COMPLETION
            await asyncio.sleep(0.02)  # an idle close reaches the router before the next request
        exposition = router.metrics.exposition().decode()
        assert "phalanx_router_retries_total{" not in exposition
        # Connections 2 and 4 were dropped as requests 3 and 5 went out on them: each replaced once.
        assert backend.connections == 6
