"""The autoscaler's scrape of entry pods, against real HTTP servers on loopback: a page that cannot
be read (an error, a hang past the timeout, a closed port) is unknown for that pass, never 0, and
the pass takes no longer than the timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from phalanx.autoscale.observe.assemble import UnitState
from phalanx.autoscale.observe.engine import UNKNOWN
from phalanx.embedded.autoscaler import Autoscaler, Held
from phalanx.runtimes.group_units import GroupUnit
from tests.component.embedded.harness import free_port, served
from tests.unit.autoscale.observe_pages import vllm_page

pytestmark = pytest.mark.component

TIMEOUT = 0.5


@pytest.fixture
async def pages() -> AsyncIterator[str]:
    """A server whose /ok/metrics is a vLLM page with 3 waiting, /error/metrics a 500 and
    /hang/metrics an answer later than the scrape timeout."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=vllm_page(waiting=3, running=2))

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(TIMEOUT * 6)
        return web.Response(text=vllm_page(waiting=0, running=0))

    app = web.Application()
    app.router.add_get("/ok/metrics", ok)
    app.router.add_get("/error/metrics", error)
    app.router.add_get("/hang/metrics", hang)
    async with served(app) as url:
        yield url


def unit(name: str, url: str, ready: bool = True) -> GroupUnit:
    return GroupUnit(UnitState(name, ready=ready), endpoint=f"default/{name}-entry", url=url)


async def test_unreadable_pages_are_unknown_and_the_pass_is_bounded(pages: str) -> None:
    scaler = Autoscaler(None, "", scrape_timeout=TIMEOUT, concurrency=2)  # type: ignore[arg-type]
    held = Held(policy=None)  # type: ignore[arg-type]
    units = [
        unit("ok", f"{pages}/ok"),
        unit("error", f"{pages}/error"),
        unit("hang", f"{pages}/hang"),
        unit("closed", f"http://127.0.0.1:{free_port()}"),
        unit("starting", f"{pages}/ok", ready=False),
    ]
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        fields = await scaler.scrape_engines(session, held, units, now=100.0)
    # Two at a time: the hang holds one slot for the timeout, the rest go through the other.
    assert time.monotonic() - started < TIMEOUT * 4
    assert (fields["ok"].waiting, fields["ok"].running) == (3, 2)
    assert fields["error"] == fields["hang"] == fields["closed"] == UNKNOWN
    assert fields["error"].waiting is None  # unknown, not 0
    assert "starting" not in fields  # a pod not ready is not asked
    assert set(held.engines) == {"default/ok-entry"}  # the window the next pass measures from
