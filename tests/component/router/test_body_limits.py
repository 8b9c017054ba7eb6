"""What one request body can cost the router: its size, encoding, the memory all bodies hold, the
parse, and how long it may take to arrive. Real sockets on loopback, small limits from config."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from phalanx.router import Router, RouterConfig

from .fakes import FakeUpstream, eventually, upstreams

pytestmark = pytest.mark.component


@asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[tuple[Router, FakeUpstream]]:
    config = RouterConfig(scrape_interval_s=None, health_check_interval_s=None, total_timeout_s=10.0, **kw)
    router = Router(config)
    await router.start("127.0.0.1", 0)
    try:
        async with upstreams(FakeUpstream("a", raw_bodies=True)) as (a,):
            router.set_endpoints([a.endpoint()])
            yield router, a
    finally:
        await router.stop(drain_timeout_s=2.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        yield s


async def post(
    http: aiohttp.ClientSession, router: Router, body: bytes, **headers: str
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **headers}
    data = io.BytesIO(body)  # aiohttp warns about sending large bytes
    async with http.post(f"{router.url}/v1/completions", data=data, headers=headers) as resp:
        return resp.status, await resp.json()


def gzipped(data: bytes) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return squeeze.compress(data) + squeeze.flush()


def bomb(inflated: int) -> bytes:
    """A gzip body of a JSON prompt of `inflated` bytes, a thousandth of that on the wire."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    parts = [squeeze.compress(b'{"model": "m", "prompt": "')]
    parts += [squeeze.compress(b"a" * 2**20) for _ in range(inflated // 2**20)]
    return b"".join([*parts, squeeze.compress(b'"}'), squeeze.flush()])


def many_keys(size: int) -> bytes:
    """A JSON object of about `size` bytes that is all keys: the most a parser pays per byte."""
    return ('{"model": "m", ' + ", ".join(f'"k{i:09d}": 1' for i in range(size // 16)) + "}").encode()


# -- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate"])
async def test_compressed_bodies_reach_the_endpoint_decoded(
    http: aiohttp.ClientSession, encoding: str
) -> None:
    body = json.dumps({"model": "m", "prompt": "zipped " * 1000}).encode()
    wire = gzipped(body) if "gzip" in encoding else zlib.compress(body)
    async with serving() as (router, a):
        status, _ = await post(http, router, wire, **{"Content-Encoding": encoding})
        assert status == 200
    assert json.loads(a.received[0]["raw"])["prompt"] == "zipped " * 1000


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"not gzip at all", "it cannot be inflated"),
        (gzipped(b'{"model": "m"}')[:-6], "it ends before its end"),
        (gzipped(b'{"model": "m"}') + b"junk", "bytes after its end"),
    ],
)
async def test_an_undecodable_body_is_a_400_and_counted_as_one(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, wire: bytes, why: str
) -> None:
    async with serving(access_log=True) as (router, a):
        with caplog.at_level(logging.INFO, logger="phalanx.router.access"):
            status, body = await post(http, router, wire, **{"Content-Encoding": "gzip"})
        text = router.metrics.exposition().decode()
    assert status == 400
    assert body["error"]["code"] == "invalid_content_encoding"
    assert why in body["error"]["message"]
    assert a.started == 0
    assert 'phalanx_router_requests_total{code="400",endpoint="",model=""} 1.0' in text
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "phalanx.router.access"]
    assert line["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_unknown_encoding_is_415_naming_it(http: aiohttp.ClientSession) -> None:
    async with serving() as (router, a):
        status, body = await post(http, router, b"\x00\x01", **{"Content-Encoding": "br"})
    assert a.started == 0
    assert status == 415
    assert body["error"]["code"] == "unsupported_content_encoding"
    assert "`Content-Encoding: br`" in body["error"]["message"]


async def test_a_gzip_bomb_is_refused_having_inflated_no_more_than_the_limit(
    http: aiohttp.ClientSession,
) -> None:
    limit = 2**20
    wire = bomb(64 * 2**20)  # 64 MiB of prompt in about 64 KiB
    async with serving(client_max_size=limit) as (router, a):
        tracemalloc.start()
        try:
            status, body = await post(http, router, wire, **{"Content-Encoding": "gzip"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert a.started == 0
    # The limit, one inflate step and copies of the wire body; never the 64 MiB.
    assert peak < 4 * limit, f"{peak / 2**20:.1f} MiB allocated"


# -- memory held by all bodies ---------------------------------------------------------------


async def test_bodies_past_the_held_bytes_budget_are_503_while_smaller_ones_go_on(
    http: aiohttp.ClientSession,
) -> None:
    gate = asyncio.Event()
    config = RouterConfig(
        scrape_interval_s=None,
        health_check_interval_s=None,
        total_timeout_s=10.0,
        max_held_body_bytes=100_000,
    )
    router = Router(config)
    await router.start("127.0.0.1", 0)
    try:
        async with upstreams(FakeUpstream("a", gate=gate)) as (a,):
            router.set_endpoints([a.endpoint()])
            big = json.dumps({"model": "m", "prompt": "x" * 60_000}).encode()
            held = asyncio.create_task(post(http, router, big))  # its body stays held while proxied
            await eventually(lambda: a.started == 1)
            async with http.post(f"{router.url}/v1/completions", data=big) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "1"
                assert (await resp.json())["error"]["code"] == "server_busy"
            small = asyncio.create_task(
                post(http, router, json.dumps({"model": "m", "prompt": "y"}).encode())
            )
            await eventually(lambda: a.started == 2)
            gate.set()
            assert [(await t)[0] for t in (held, small)] == [200, 200]
        assert router.bodies.used == 0  # every request gave its bytes back
    finally:
        await router.stop(drain_timeout_s=2.0)


# -- the parse -------------------------------------------------------------------------------


async def test_a_large_body_is_parsed_without_stalling_the_event_loop(http: aiohttp.ClientSession) -> None:
    body = many_keys(8 * 2**20)
    started = time.perf_counter()
    json.loads(body)  # what an in-process parse would stall the loop for
    parse_s = time.perf_counter() - started
    async with serving(client_max_size=16 * 2**20) as (router, a):
        # The router shares this test's event loop: its longest stall is the longest tick here.
        request = asyncio.create_task(post(http, router, body))
        worst = 0.0
        while not request.done():
            ticked = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - ticked)
        status, _ = await request
    assert status == 200
    assert a.received[0]["raw"] == body
    assert worst < parse_s / 2, f"the event loop stalled {worst:.3f} s; the parse takes {parse_s:.3f} s"


async def test_a_body_too_complex_for_the_parse_memory_cap_is_413(http: aiohttp.ClientSession) -> None:
    # Four MB of empty objects are some 130 MB of Python objects; a long plain prompt is not.
    nested = b'{"model": "m", "prompt": [' + b",".join([b"{}"] * (2 * 2**20)) + b"]}"
    prompt = json.dumps({"model": "m", "prompt": "p" * 4 * 2**20}).encode()
    async with serving(parse_memory_bytes=128 * 2**20) as (router, a):
        status, body = await post(http, router, nested)
        assert status == 413
        assert "too many JSON values" in body["error"]["message"]
        status, _ = await post(http, router, prompt)
        assert status == 200
    assert a.started == 1


# -- time ------------------------------------------------------------------------------------


async def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closes() -> None:
    async with serving(body_timeout_s=0.3) as (router, a):
        host, port = router.url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            head = b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
            writer.write(head + b"Content-Length: 100\r\n\r\n" + b'{"model": "m"')
            answer = await asyncio.wait_for(reader.read(), 3)  # to the end: the router closes
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert b'"code": "request_timeout"' in answer
    assert a.started == 0
    assert router.bodies.used == 0
