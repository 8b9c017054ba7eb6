"""Through the router: with `phalanx router`'s logging set-up, access lines are kept and written
together, and a clean stop writes every one of them."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator

import aiohttp

from phalanx.router.endpoints import Endpoint
from phalanx.router.server import Router, RouterConfig, access_logger
from tests.unit.router.test_upstream import Backend, Handler, answer

COMPLETION = b'{"object":"text_completion","choices":[{"index":0,"text":"ok"}]}'
REQUESTS = 20


def keep_alive(backend: Backend) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                await backend.read_request(reader)
                writer.write(answer(COMPLETION))
                await writer.drain()

    return handler


@contextlib.contextmanager
def basic_stream() -> Iterator[io.StringIO]:
    """The access logger on one plain stream handler with `phalanx router`'s format (and only
    that: entered in the test's body, after pytest attached its capture to non-propagating
    loggers)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = access_logger.handlers[:], access_logger.propagate, access_logger.level
    access_logger.handlers[:] = [handler]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        access_logger.handlers[:], access_logger.propagate = saved[0], saved[1]
        access_logger.setLevel(saved[2])


async def test_kept_access_lines_are_all_written_by_a_clean_stop() -> None:
    with basic_stream() as stream:
        await _requests_then_stop(stream)


async def _requests_then_stop(basic_stream: io.StringIO) -> None:
    config = RouterConfig(scrape_interval_s=None, health_check_interval_s=None, access_log=True)
    router = Router(config)
    router._access._interval = 60.0  # nothing leaves on the timer within the test: only the stop
    async with Backend(keep_alive) as backend, aiohttp.ClientSession() as http:
        await router.start()
        try:
            router.set_endpoints(
                [Endpoint(name="e", url=backend.url, serving="demo", group_index=0, models=("m",))]
            )
            for n in range(REQUESTS):
                headers = {"X-Request-Id": f"req-{n}"}
                body = {"model": "m", "prompt": "x"}
                async with http.post(f"{router.url}/v1/completions", json=body, headers=headers) as resp:
                    assert resp.status == 200
            assert basic_stream.getvalue() == ""  # kept, not written per request
        finally:
            await router.stop()
    lines = basic_stream.getvalue().splitlines()
    assert len(lines) == REQUESTS
    prefix = " INFO phalanx.router.access: "
    assert all(prefix in line for line in lines)
    records = [json.loads(line.split(prefix, 1)[1]) for line in lines]
    assert [r["request_id"] for r in records] == [f"req-{n}" for n in range(REQUESTS)]
    assert {(r["status"], r["endpoint"], r["model"]) for r in records} == {(200, "e", "m")}
