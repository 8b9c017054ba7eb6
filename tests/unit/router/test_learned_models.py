"""Model lists learned from endpoints' `GET /v1/models`: the router asks while some endpoint's list
is unknown and stops asking once all are known, on real loopback sockets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from phalanx.router.endpoints import Endpoint
from phalanx.router.server import Router, running


@contextlib.asynccontextmanager
async def engine(model: str) -> AsyncIterator[tuple[str, list[str]]]:
    """An engine serving `model`; yields its URL and the paths it was asked for."""
    asked: list[str] = []

    async def models(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"}]})

    async def completions(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"model": model, "choices": [{"text": "ok"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", asked
    finally:
        await runner.cleanup()


async def _post(session: aiohttp.ClientSession, url: str, model: str) -> int:
    async with session.post(f"{url}/v1/completions", json={"model": model, "prompt": "hi"}) as resp:
        await resp.read()
        return resp.status


async def test_models_are_learned_once_and_again_when_discovery_changes() -> None:
    async with engine("a") as (url_a, asked_a), engine("b") as (url_b, asked_b):
        router = Router()
        router.set_endpoints([Endpoint("x", url_a, "s", 0)])
        async with running(router), aiohttp.ClientSession() as session:
            assert await _post(session, router.url, "a") == 200
            assert await _post(session, router.url, "a") == 200
            assert asked_a == ["/v1/models", "/v1/completions", "/v1/completions"]  # asked once
            # A new endpoint whose models nobody declared: learned before the next request routes.
            router.set_endpoints([Endpoint("y", url_b, "s", 0)])
            assert await _post(session, router.url, "b") == 200
            assert asked_b == ["/v1/models", "/v1/completions"]
            assert await _post(session, router.url, "a") == 404
