"""The router at zero: requests for a declared model with no endpoint wait in the admission queue
and are served by the first engine (a real `phalanx sim` process) that registers; demand is visible
in `/metrics` meanwhile."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from phalanx.router import Endpoint, Router, RouterConfig
from phalanx.router.admission import AdmissionConfig
from phalanx.router.declared import Declared, declared_by_servings
from tests.component.sim.conftest import FAST, SimProcess, start_sim, wait_health

from .fakes import eventually

__all__ = ["start_sim"]  # the fixture, used by name

pytestmark = pytest.mark.component

MODEL = "tiny"  # what `start_sim` serves


def zero_replica_serving() -> dict[str, Any]:
    """A ModelServing scaled to zero, as discovery sees it: it declares `tiny`, no pod exists."""
    engine = {"name": "engine", "command": ["phalanx", "sim"], "args": ["--served-model-name", MODEL]}
    role = {"name": "sim", "entryTemplate": {"spec": {"containers": [engine]}}}
    return {"metadata": {"name": "demo"}, "spec": {"replicas": 0, "template": {"roles": [role]}}}


def sim_endpoint(sim: SimProcess, *, ready: bool = True) -> Endpoint:
    return Endpoint(
        name="demo-0", url=sim.base_url, serving="demo", group_index=0, models=(MODEL,), ready=ready
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def started(config: RouterConfig) -> Router:
    router = Router(config)
    await router.start("127.0.0.1", 0)
    return router


async def metric(http: aiohttp.ClientSession, router: Router, name: str, model: str = MODEL) -> float | None:
    async with http.get(f"{router.url}/metrics") as resp:
        text = await resp.text()
    found = re.search(rf'^{re.escape(name)}{{model="{re.escape(model)}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


async def complete(http: aiohttp.ClientSession, router: Router, **headers: str) -> tuple[int, dict[str, Any]]:
    body = {"model": MODEL, "prompt": "hello there", "max_tokens": 4}
    async with http.post(f"{router.url}/v1/completions", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def stream(http: aiohttp.ClientSession, router: Router) -> tuple[int, list[str]]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
    async with http.post(f"{router.url}/v1/chat/completions", json=body) as resp:
        events = [line.decode().strip() async for line in resp.content if line.strip()]
        return resp.status, events


async def test_held_requests_are_served_when_the_first_engine_registers(
    start_sim: Callable[..., SimProcess], http: aiohttp.ClientSession
) -> None:
    router = await started(RouterConfig())
    try:
        router.set_declared(declared_by_servings([zero_replica_serving()]))
        waiting = asyncio.create_task(complete(http, router))
        await eventually(lambda: router.held() == {MODEL: 1})
        assert await metric(http, router, "phalanx_router_held_requests") == 1.0
        assert await metric(http, router, "phalanx_router_arrivals_total") == 1.0
        async with http.get(f"{router.url}/debug/demand") as resp:
            assert await resp.json() == {
                "complete": True,
                "models": [
                    {"model": MODEL, "declared": True, "routable_endpoints": 0, "waiting": 1, "held": 1}
                ],
            }
        assert (await metric(http, router, "phalanx_router_arrival_prompt_tokens_total") or 0) > 0

        # The group's entry pod is created (not ready: the engine is loading), then becomes ready.
        sim = start_sim(*FAST)
        router.set_endpoints([sim_endpoint(sim, ready=False)])
        await asyncio.to_thread(wait_health, sim.port, 200)
        assert not waiting.done()
        router.set_endpoints([sim_endpoint(sim)])
        status, answer = await asyncio.wait_for(waiting, 10)
        assert status == 200 and answer["choices"][0]["text"]
        assert router.held() == {}
        assert await metric(http, router, "phalanx_router_held_requests") == 0.0
        async with http.get(f"{router.url}/debug/demand") as resp:
            (demand,) = (await resp.json())["models"]
            assert (demand["routable_endpoints"], demand["waiting"], demand["held"]) == (1, 0, 0)

        # Back to zero: a stream waits, and is relayed whole when the engine is back.
        router.set_endpoints([])
        streaming = asyncio.create_task(stream(http, router))
        await eventually(lambda: router.held() == {MODEL: 1})
        router.set_endpoints([sim_endpoint(sim)])
        status, events = await asyncio.wait_for(streaming, 10)
        assert status == 200
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
        assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert await metric(http, router, "phalanx_router_arrivals_total") == 2.0
        assert await metric(http, router, "phalanx_router_held_requests") == 0.0
    finally:
        await router.stop()


async def test_a_held_request_times_out_with_504_and_the_demand_goes_back_to_0(
    http: aiohttp.ClientSession,
) -> None:
    router = await started(RouterConfig(hold_models=(MODEL,)))
    try:
        began = time.monotonic()
        status, answer = await complete(http, router, **{"x-queue-timeout": "0.3"})
        assert status == 504 and answer["error"]["code"] == "queue_timeout"
        assert 0.3 <= time.monotonic() - began < 5
        assert router.held() == {}
        assert await metric(http, router, "phalanx_router_held_requests") == 0.0
        assert await metric(http, router, "phalanx_router_arrivals_total") == 1.0
    finally:
        await router.stop()


async def test_a_full_queue_turns_away_a_held_request_with_429(http: aiohttp.ClientSession) -> None:
    router = await started(RouterConfig(hold_models=(MODEL,), admission=AdmissionConfig(max_queue=1)))
    try:
        first = asyncio.create_task(complete(http, router))
        await eventually(lambda: router.held() == {MODEL: 1})
        status, answer = await complete(http, router)
        assert status == 429 and answer["error"]["code"] == "queue_full"
        first.cancel()
        await eventually(lambda: router.held() == {})
    finally:
        await router.stop()


async def test_a_client_that_hangs_up_leaves_the_queue(http: aiohttp.ClientSession) -> None:
    router = await started(RouterConfig(hold_models=(MODEL,)))
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await complete(http, router)
        await eventually(lambda: router.held() == {} and router.admission.waiting_by_model() == {})
        assert await metric(http, router, "phalanx_router_held_requests") == 0.0
    finally:
        await router.stop()


async def test_an_unknown_model_is_404_at_once_and_not_counted_as_demand(http: aiohttp.ClientSession) -> None:
    router = await started(RouterConfig())
    try:
        router.set_declared(declared_by_servings([zero_replica_serving()]))
        began = time.monotonic()
        async with http.post(f"{router.url}/v1/completions", json={"model": "nope", "prompt": "x"}) as resp:
            assert resp.status == 404
            assert "`nope` does not exist" in (await resp.json())["error"]["message"]
        assert time.monotonic() - began < 1.0
        assert await metric(http, router, "phalanx_router_arrivals_total", "nope") is None
        assert await metric(http, router, "phalanx_router_arrivals_total", "_unknown") is None
    finally:
        await router.stop()


async def test_a_model_no_longer_declared_ends_the_wait_with_503(http: aiohttp.ClientSession) -> None:
    router = await started(RouterConfig())
    try:
        router.set_declared(declared_by_servings([zero_replica_serving()]))
        waiting = asyncio.create_task(complete(http, router))
        await eventually(lambda: router.held() == {MODEL: 1})
        router.set_declared(Declared(complete=False))  # its ModelServing was deleted
        status, answer = await asyncio.wait_for(waiting, 5)
        assert status == 503 and "No endpoint serving `tiny`" in answer["error"]["message"]
        assert router.held() == {}
    finally:
        await router.stop()


async def test_stopping_the_router_answers_held_requests_at_once(http: aiohttp.ClientSession) -> None:
    router = await started(RouterConfig(hold_models=(MODEL,), drain_timeout_s=20.0))
    waiting = asyncio.create_task(complete(http, router))
    await eventually(lambda: router.held() == {MODEL: 1})
    began = time.monotonic()
    await router.stop()
    assert time.monotonic() - began < 5  # not the 20 s drain bound, nor the 30 s queue timeout
    status, _ = await asyncio.wait_for(waiting, 5)
    assert status == 503
