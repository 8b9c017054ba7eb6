"""The web view's live stream, `GET /ui/events`: an event per change, heartbeats, a bound on open
streams, the API keys, and a router that stops without waiting for open pages."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from phalanx.router import Router, RouterConfig
from phalanx.router.server import running
from phalanx.router.webui import HEARTBEAT, StateProvider, StreamLimits, digest, next_frame

FAST = StreamLimits(max_streams=2, period_s=0.02, heartbeat_s=0.2)


class Changing:
    """A provider whose snapshot the test changes: one ModelServing with `replicas` groups."""

    def __init__(self) -> None:
        self.replicas = 1

    async def snapshot(self) -> dict[str, Any]:
        groups = [{"index": i, "name": f"g{i}", "phase": "Ready"} for i in range(self.replicas)]
        serving = {
            "metadata": {"name": "demo", "namespace": "default"},
            "spec": {"replicas": self.replicas},
            "status": {"groups": groups},
        }
        return {"servings": [serving], "pods": []}


def quiet(**kw: Any) -> RouterConfig:
    return RouterConfig(scrape_interval_s=None, health_check_interval_s=None, ui_streams=FAST, **kw)


async def frames(resp: aiohttp.ClientResponse) -> Any:
    """The stream's frames as they come: ("state", document) or ("heartbeat", None)."""
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            if frame + b"\n\n" == HEARTBEAT:
                yield "heartbeat", None
            else:
                event, data = frame.split(b"\n")
                assert event == b"event: state" and data.startswith(b"data: ")
                yield "state", json.loads(data[len(b"data: ") :])


def test_an_event_only_when_the_document_changes_and_a_heartbeat_when_quiet() -> None:
    body, hashed = digest({"b": 1, "a": [1, 2]})
    assert (body, hashed) == digest({"a": [1, 2], "b": 1})  # key order does not make a change
    assert b"\n" not in body
    assert next_frame(body, hashed, None, 0.0, 0.0, 15.0) == b"event: state\ndata: " + body + b"\n\n"
    assert next_frame(body, hashed, hashed, 14.9, 0.0, 15.0) is None
    assert next_frame(body, hashed, hashed, 15.0, 0.0, 15.0) == HEARTBEAT
    _, other = digest({"a": [1, 2], "b": 2})
    assert next_frame(body, other, hashed, 1.0, 0.0, 15.0) is not None


def test_stream_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="period_s"):
        StreamLimits(period_s=0)


async def test_the_stream_sends_the_state_then_each_change_with_heartbeats_between() -> None:
    source = Changing()
    router = Router(quiet())
    router.state_provider = StateProvider("up", source.snapshot)
    async with TestClient(TestServer(router.build_app())) as client:
        resp = await client.get("/ui/events")
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-store"
        seen: list[str] = []
        async with asyncio.timeout(10):
            async for kind, document in frames(resp):
                seen.append(kind)
                if kind == "state":
                    groups = [g["name"] for g in document["servings"][0]["groups"]]
                    assert groups == [f"g{i}" for i in range(source.replicas)]
                    assert document["source"] == "up" and "queued" in document
                if seen.count("heartbeat") == 2 and source.replicas == 1:
                    source.replicas = 2  # a change after two quiet periods
                if seen.count("state") == 2:
                    break
        resp.close()
    # One event for the first state and one for the change, never one per period (50 a second).
    assert seen == ["state", "heartbeat", "heartbeat", "state"]


async def test_streams_beyond_the_bound_are_refused_with_an_openai_style_429() -> None:
    router = Router(quiet())
    async with TestClient(TestServer(router.build_app())) as client:
        first, second = await client.get("/ui/events"), await client.get("/ui/events")
        assert (first.status, second.status) == (200, 200)
        refused = await client.get("/ui/events")
        assert refused.status == 429 and refused.headers["Retry-After"] == "30"
        error = (await refused.json())["error"]
        assert error["code"] == "too_many_streams" and "/ui/state" in error["message"]
        first.close()
        # The slot frees once the server sees the client gone.
        async with asyncio.timeout(5):
            while (again := await client.get("/ui/events")).status != 200:
                again.close()
                await asyncio.sleep(0.05)
        again.close()
        second.close()


async def test_with_keys_the_stream_needs_a_key_and_ends_when_the_key_is_removed(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("team:sk-team-12345\nother:sk-other-6789\n")
    router = Router(quiet(api_keys=keys, api_keys_reload_s=0.05))
    async with TestClient(TestServer(router.build_app())) as client:
        refused = await client.get("/ui/events")
        assert refused.status == 401 and (await refused.json())["error"]["code"] == "invalid_api_key"
        resp = await client.get("/ui/events", headers={"Authorization": "Bearer sk-team-12345"})
        assert resp.status == 200
        keys.write_text("other:sk-other-6789\n")
        async with asyncio.timeout(10):
            kinds = [kind async for kind, _ in frames(resp)]  # ends: the key is no longer valid
        assert kinds[0] == "state"


async def test_stopping_the_router_ends_open_streams_at_once() -> None:
    router = Router(quiet())
    async with running(router) as r, aiohttp.ClientSession() as session:
        resp = await session.get(f"{r.url}/ui/events")
        assert resp.status == 200
        reader = asyncio.ensure_future(resp.read())
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await router.stop(drain_timeout_s=30)
        assert time.monotonic() - started < 2  # the open page did not hold the drain up
        async with asyncio.timeout(5):
            body = await reader
        assert body.startswith(b"event: state\n")
        resp.close()


async def test_a_stream_asked_for_while_the_router_stops_gets_a_503() -> None:
    router = Router(quiet())
    async with TestClient(TestServer(router.build_app())) as client:
        router.ui_streams.close()
        refused = await client.get("/ui/events")
        assert refused.status == 503 and (await refused.json())["error"]["code"] == "stopping"


async def test_open_streams_share_one_build_of_the_document_per_period() -> None:
    source, calls = Changing(), [0]

    async def counted() -> dict[str, Any]:
        calls[0] += 1
        return await source.snapshot()

    limits = StreamLimits(max_streams=4, period_s=0.05, heartbeat_s=10)
    router = Router(RouterConfig(scrape_interval_s=None, health_check_interval_s=None, ui_streams=limits))
    router.state_provider = StateProvider("up", counted)
    async with TestClient(TestServer(router.build_app())) as client:
        streams = [await client.get("/ui/events") for _ in range(4)]
        assert [s.status for s in streams] == [200] * 4
        calls[0] = 0
        started = time.monotonic()
        await asyncio.sleep(1.0)
        periods = (time.monotonic() - started) / limits.period_s
        for stream in streams:
            stream.close()
    # Four streams each looking every period would build 4 documents a period; shared, about one.
    assert calls[0] <= 1.5 * periods + 2, (calls[0], periods)
