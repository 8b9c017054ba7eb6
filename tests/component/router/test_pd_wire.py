"""What the router puts on the wire in both prefill/decode flows, seen by recording engines on
loopback: bodies, the shared request id, SGLang's concurrency, and prefill cancelled with decode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from phalanx.router import Endpoint
from phalanx.router.pdbodies import ClientBody, vllm_prefill_body
from phalanx.router.policies.pd import PdConfig
from phalanx.router.server import Router, RouterConfig, running

from .fakes import FakeUpstream, eventually, upstreams

pytestmark = pytest.mark.component

KV = {"do_remote_prefill": True, "remote_engine_id": "e1", "remote_block_ids": [[1, 2]], "future_field": [3]}
CHAT = {
    "model": "m",
    "messages": [{"role": "user", "content": "x" * 4000}],
    "max_tokens": 8,
    "min_tokens": 2,
    "stream": True,
    "stream_options": {"include_usage": True},
}


@dataclass
class Prefill:
    """A prefill engine that records what it gets. vLLM: answers `KV`. SGLang: answers only once
    the decode engine got its request (so it fails unless both were sent together), then holds
    the answer while `hold` is set."""

    decode: FakeUpstream
    sglang: bool = False
    hold: bool = False
    received: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    cancelled: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.json(), request.headers.get("X-Request-Id", "")))
        try:
            if self.sglang:
                await eventually(lambda: self.decode.received, timeout_s=2.0)
                if self.hold:
                    await asyncio.sleep(30)
                return web.json_response({"choices": [{"text": "a"}]})
            return web.json_response(
                {"choices": [{"text": "a", "finish_reason": "length"}], "kv_transfer_params": KV}
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


@asynccontextmanager
async def serve(prefill: Prefill) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", prefill.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def pd_pair(
    protocol: str, decode_mode: str = "ok", hold: bool = False
) -> AsyncIterator[tuple[Router, Prefill, FakeUpstream]]:
    async with upstreams(FakeUpstream("d0", mode=decode_mode)) as (decode,):
        prefill = Prefill(decode, sglang=protocol == "sglang", hold=hold)
        async with serve(prefill) as url:
            common: dict[str, Any] = {
                "serving": "s",
                "group_index": 0,
                "models": ("m",),
                "pd_protocol": protocol,
            }
            port: dict[str, Any] = {"bootstrap_port": 9123} if protocol == "sglang" else {}
            endpoints = [
                Endpoint("p0", url, pd_role="prefill", **common, **port),
                Endpoint("d0", decode.url, pd_role="decode", **common),
            ]
            config = RouterConfig(pd=PdConfig(), scrape_interval_s=None, health_check_interval_s=None)
            async with running(Router(config)) as router:
                router.set_endpoints(endpoints)
                yield router, prefill, decode


async def send(router: Router, body: dict[str, Any]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        url = f"{router.url}/v1/chat/completions"
        async with session.post(url, json=body, headers={"X-Request-Id": "req-42"}) as r:
            return r.status, await r.read()


async def test_vllm_prefill_then_decode_with_the_params_verbatim_and_one_request_id() -> None:
    async with pd_pair("vllm") as (router, prefill, decode):
        status, text = await send(router, CHAT)
        assert status == 200 and b"data: [DONE]" in text  # decode's stream, relayed
        ((prefill_body, prefill_id),) = prefill.received
        assert prefill_body == json.loads(vllm_prefill_body(ClientBody(b"", CHAT), chat=True))
        assert "stream_options" not in prefill_body and "min_tokens" not in prefill_body
        assert (
            prefill_body["stream"],
            prefill_body["max_tokens"],
            prefill_body["max_completion_tokens"],
        ) == (
            False,
            1,
            1,
        )
        (got,) = decode.received
        assert got["body"] == CHAT | {"kv_transfer_params": KV}
        assert prefill_id == got["headers"]["X-Request-Id"] == "req-42"


async def test_sglang_sends_both_at_once_with_one_room() -> None:
    async with pd_pair("sglang") as (router, prefill, decode):
        status, _ = await send(router, CHAT)
        assert status == 200  # prefill answered only after decode had its request
        ((prefill_body, prefill_id),) = prefill.received
        (got,) = decode.received
        bootstrap = ("bootstrap_host", "bootstrap_port", "bootstrap_room")
        shared = {k: prefill_body[k] for k in bootstrap}
        assert shared == {k: got["body"][k] for k in bootstrap}
        assert shared["bootstrap_host"] == "127.0.0.1" and shared["bootstrap_port"] == 9123
        assert 0 <= shared["bootstrap_room"] < 2**63
        assert {k: v for k, v in got["body"].items() if k not in bootstrap} == CHAT
        assert prefill_body["stream"] is False and prefill_body["max_tokens"] == 1
        assert prefill_id == got["headers"]["X-Request-Id"] == "req-42"
        status, _ = await send(router, CHAT)
        assert decode.received[1]["body"]["bootstrap_room"] != shared["bootstrap_room"]


async def test_sglang_prefill_is_cancelled_when_decode_fails() -> None:
    async with pd_pair("sglang", decode_mode="500", hold=True) as (router, prefill, _):
        status, _ = await send(router, CHAT)
        assert status == 500  # decode's own answer: an engine error is relayed, not retried
        await eventually(lambda: prefill.cancelled == 1)


async def test_a_large_body_is_edited_as_bytes_and_read_the_same() -> None:
    big = CHAT | {"messages": [{"role": "user", "content": "y" * 100_000}]}  # past the in-process parse bound
    async with pd_pair("vllm") as (router, prefill, decode):
        status, _ = await send(router, big)
        assert status == 200
        ((prefill_body, _),) = prefill.received
        assert (prefill_body["stream"], prefill_body["max_tokens"], prefill_body["stream_options"]) == (
            False,
            1,
            None,
        )
        assert prefill_body["min_tokens"] == 0 and prefill_body["messages"] == big["messages"]
        assert decode.received[0]["body"] == big | {"kv_transfer_params": KV}
