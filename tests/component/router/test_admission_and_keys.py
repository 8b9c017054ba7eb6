"""The router's admission, API keys, per-request policies and ejection, over real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from phalanx.router import Endpoint, Router, RouterConfig
from phalanx.router.admission import AdmissionConfig
from phalanx.router.backends import OutlierConfig

from .fakes import FakeUpstream, eventually, refused_url, upstreams


@asynccontextmanager
async def running(config: RouterConfig) -> AsyncIterator[Router]:
    router = Router(config)
    await router.start("127.0.0.1", 0)
    try:
        yield router
    finally:
        await router.stop(drain_timeout_s=2.0)


def quiet(**kw: Any) -> RouterConfig:
    """No background scraping or health checks: the fakes serve neither."""
    return RouterConfig(scrape_interval_s=None, health_check_interval_s=None, total_timeout_s=10.0, **kw)


async def post(http: aiohttp.ClientSession, router: Router, **kw: Any) -> tuple[int, dict[str, Any], Any]:
    body = kw.pop("json", {"model": "m", "prompt": "x"})
    async with http.post(f"{router.url}/v1/completions", json=body, **kw) as resp:
        return resp.status, dict(resp.headers), await resp.json()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        yield s


async def test_a_full_queue_is_429_with_retry_after_and_a_queue_timeout_is_504(
    http: aiohttp.ClientSession,
) -> None:
    gate = asyncio.Event()
    config = quiet(admission=AdmissionConfig(default_cap=1, max_queue=1, queue_timeout_s=5))
    async with running(config) as router, upstreams(FakeUpstream("a", gate=gate)) as (a,):
        router.set_endpoints([a.endpoint()])
        held = asyncio.create_task(post(http, router))  # takes the one slot
        await eventually(lambda: a.started == 1)
        queued = asyncio.create_task(post(http, router, headers={"x-queue-timeout": "0.3"}))
        await eventually(lambda: sum(router.admission.queue_depth().values()) == 1)
        code, headers, body = await post(http, router)  # the queue (1) is full
        assert code == 429 and int(headers["Retry-After"]) >= 1
        assert body["error"]["code"] == "queue_full"
        code, _, body = await queued
        assert code == 504 and body["error"]["code"] == "queue_timeout"
        assert "waiting in the queue" in body["error"]["message"]
        gate.set()
        assert (await held)[0] == 200
        text = router.metrics.exposition().decode()
    assert 'phalanx_router_errors_total{kind="queue_full"} 1.0' in text
    assert 'phalanx_router_errors_total{kind="queue_timeout"} 1.0' in text


async def test_a_waiting_request_gets_the_slot_when_one_frees(http: aiohttp.ClientSession) -> None:
    gate = asyncio.Event()
    config = quiet(admission=AdmissionConfig(default_cap=1))
    async with running(config) as router, upstreams(FakeUpstream("a", gate=gate)) as (a,):
        router.set_endpoints([a.endpoint()])
        first = asyncio.create_task(post(http, router))
        await eventually(lambda: a.started == 1)
        second = asyncio.create_task(post(http, router, headers={"x-priority": "high"}))
        await eventually(lambda: router.admission.queue_depth()["high"] == 1)
        assert a.started == 1  # the cap holds it back
        gate.set()
        assert [(await t)[0] for t in (first, second)] == [200, 200]
        code, _, body = await post(http, router, headers={"x-priority": "urgent"})
    assert code == 400 and body["error"]["param"] == "x-priority"


def key_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "keys"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_api_keys_are_required_and_never_reach_the_endpoint(tmp_path: Path) -> None:
    keys = key_file(tmp_path, "# team keys", "team-a:sk-alpha")
    async with running(quiet(api_keys=keys)) as router, upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        good = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="sk-alpha", max_retries=0)
        bad = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="sk-wrong", max_retries=0)
        assert (await good.completions.create(model="m", prompt="x")).choices[0].text == "a"
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.completions.create(model="m", prompt="x")
        assert info.value.code == "invalid_api_key"
        assert a.started == 1
        await good.close()
        await bad.close()
    assert all("Authorization" not in r["headers"] for r in a.received)  # the router's key stays here


async def test_with_keys_the_listings_need_a_key_and_probes_do_not(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    keys = key_file(tmp_path, "team-a:sk-alpha-1234")
    async with running(quiet(api_keys=keys)) as router, upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        for path in ("/v1/models", "/debug/endpoints"):  # backend addresses and what is served
            async with http.get(router.url + path) as resp:
                assert resp.status == 401, path
                assert (await resp.json())["error"]["code"] == "invalid_api_key"
            async with http.get(router.url + path, headers={"Authorization": "Bearer sk-alpha-1234"}) as resp:
                assert resp.status == 200, path
        for path in ("/health", "/metrics"):  # kubelet probes and Prometheus carry no key
            async with http.get(router.url + path) as resp:
                assert resp.status == 200, path


async def test_a_key_asking_above_its_priority_is_queued_at_its_own(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    keys = key_file(tmp_path, "plain:sk-plain-1234", "vip:sk-vip-12345 priority=high")
    gate = asyncio.Event()
    config = quiet(api_keys=keys, admission=AdmissionConfig(default_cap=1))
    async with running(config) as router, upstreams(FakeUpstream("a", gate=gate)) as (a,):
        router.set_endpoints([a.endpoint()])

        def as_key(key: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {key}", "x-priority": "high"}

        held = asyncio.create_task(post(http, router, headers=as_key("sk-plain-1234")))
        await eventually(lambda: a.started == 1)
        plain = asyncio.create_task(post(http, router, headers=as_key("sk-plain-1234")))
        await eventually(lambda: sum(router.admission.queue_depth().values()) == 1)
        assert router.admission.queue_depth() == {"high": 0, "normal": 1, "low": 0}
        vip = asyncio.create_task(post(http, router, headers=as_key("sk-vip-12345")))
        await eventually(lambda: router.admission.queue_depth()["high"] == 1)
        gate.set()
        assert [(await t)[0] for t in (held, plain, vip)] == [200, 200, 200]


async def raw_exchange(router: Router, request: bytes) -> bytes:
    """One request as bytes on a fresh connection (for what a client library will not send)."""
    host, port = router.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_malformed_key_is_401_and_no_key_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = key_file(tmp_path, "team-a:sk-alpha-1234")
    body = b'{"model": "m", "prompt": "x"}'
    async with running(quiet(api_keys=keys)) as router, upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        for key in (b"sk-alpha-1234\xff", b"sk-alpha-1234\x01"):  # not UTF-8; a control character
            head = b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
            request = head + b"Authorization: Bearer " + key + b"\r\n"
            answer = await raw_exchange(router, request + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 401 Unauthorized", b"HTTP/1.0 400 Bad Request")
        assert a.started == 0
    assert "sk-alpha" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("session", "body"),
    [
        (b"\xff\xfe", b'{"model": "m", "prompt": "x"}'),  # a header that is not UTF-8
        (None, b'{"model": "m", "prompt": "x", "user": "\\ud800"}'),  # a lone surrogate in JSON
    ],
)
async def test_a_session_that_is_not_utf8_is_routed(session: bytes | None, body: bytes) -> None:
    async with (
        running(quiet(policy="session")) as router,
        upstreams(FakeUpstream("a"), FakeUpstream("b")) as ab,
    ):
        router.set_endpoints([f.endpoint() for f in ab])
        head = b"POST /v1/completions HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
        if session is not None:
            head += b"x-session-id: " + session + b"\r\n"
        answer = await raw_exchange(router, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:200]


async def test_per_key_request_rate_limit_is_429_with_openai_headers(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    keys = key_file(tmp_path, "slow:sk-slow-key-1 rpm=2")
    async with running(quiet(api_keys=keys)) as router, upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        auth = {"Authorization": "Bearer sk-slow-key-1"}
        codes = []
        for _ in range(3):
            code, headers, body = await post(http, router, headers=auth)
            codes.append(code)
        assert codes == [200, 200, 429]
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert int(headers["Retry-After"]) >= 1
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert a.started == 2


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"", {}),
        (b"[]", {}),
        (b'{"model": 7}', {}),
        (b'{"model": "m", "messages": "not a list"}', {}),
        (b'{"model": "m", "prompt": [1, "mixed", null]}', {}),
        (b'{"model": "m", "prompt": "x"}', {"x-routing-policy": "fastest"}),
        (b'{"model": "m", "prompt": "x"}', {"x-queue-timeout": "-1"}),
        (b'{"model": "m", "prompt": "x"}', {"x-priority": "\\u0000"}),
        (b"\xff\xfe", {"content-type": "application/json"}),
        (b'{"model": "m", "max_tokens": ' + b"9" * 5000 + b"}", {}),
        (b'{"model": "m", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}),
    ],
)
async def test_malformed_requests_never_get_a_5xx(
    http: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
) -> None:
    async with running(quiet()) as router, upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        async with http.post(f"{router.url}/v1/chat/completions", data=body, headers=headers) as resp:
            assert resp.status < 500, await resp.text()
            payload = await resp.json()
    assert "error" in payload or "choices" in payload


async def test_the_policy_can_be_chosen_per_request(http: aiohttp.ClientSession) -> None:
    async with (
        running(quiet(policy="round-robin")) as router,
        upstreams(FakeUpstream("a"), FakeUpstream("b")) as (
            a,
            b,
        ),
    ):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        texts = [(await post(http, router))[2]["choices"][0]["text"] for _ in range(4)]
        assert sorted(texts) == ["a", "a", "b", "b"]  # round-robin
        prompt = {"model": "m", "prompt": "a long shared system prompt " * 20}
        chosen = [
            (await post(http, router, json=prompt, headers={"x-routing-policy": "prefix-cache"}))[2][
                "choices"
            ][0]["text"]
            for _ in range(4)
        ]
        assert len(set(chosen)) == 1  # the prefix sticks to the endpoint that saw it
        text = router.metrics.exposition().decode()
    assert 'phalanx_router_routing_decisions_total{policy="round-robin",reason="rotation"}' in text
    assert 'policy="prefix-cache",reason="prefix-hit"' in text


async def test_a_failing_endpoint_is_ejected_and_traffic_moves(http: aiohttp.ClientSession) -> None:
    config = quiet(outlier=OutlierConfig(consecutive_failures=2, base_ejection_s=60), max_attempts=2)
    async with running(config) as router, upstreams(FakeUpstream("b")) as (b,):
        dead = Endpoint(name="a", url=refused_url(), serving="demo", group_index=0, models=("m",))
        router.set_endpoints([dead, b.endpoint()])
        for _ in range(6):
            assert (await post(http, router))[0] == 200  # retried on b when a refuses
        text = router.metrics.exposition().decode()
        retries = _sample(text, 'phalanx_router_retries_total{endpoint="a"')
        assert retries == 2  # two failures eject it; then it is not tried any more
        assert 'phalanx_router_health_events_total{endpoint="a",event="ejected",source="passive"} 1.0' in text


async def test_one_clients_failing_requests_eject_no_endpoint(http: aiohttp.ClientSession) -> None:
    # Twelve requests that every engine answers 500 (say, a prompt that trips an engine bug).
    config = quiet(outlier=OutlierConfig(consecutive_failures=2, base_ejection_s=60))
    async with (
        running(config) as router,
        upstreams(FakeUpstream("a", mode="500"), FakeUpstream("b", mode="500")) as (a, b),
    ):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        codes = [(await post(http, router))[0] for _ in range(12)]
        assert codes == [500] * 12
        assert router.detector.ejected(time.monotonic()) == frozenset()
        assert _sample(_samples(router), "phalanx_router_health_events_total") == 0  # exported, never counted
        assert a.started + b.started == 12


async def test_failures_for_two_keys_eject_the_endpoint(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    keys = key_file(tmp_path, "alice:sk-alice-123", "bob:sk-bob-12345")
    config = quiet(api_keys=keys, policy="round-robin", outlier=OutlierConfig(consecutive_failures=2))
    async with (
        running(config) as router,
        upstreams(FakeUpstream("a", mode="500"), FakeUpstream("b")) as (a, b),
    ):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        for key in ("sk-alice-123", "sk-alice-123", "sk-bob-12345", "sk-bob-12345"):
            await post(http, router, headers={"Authorization": f"Bearer {key}"})
        assert a.started == 2  # alice's then bob's 500: two clients, so a broken endpoint
        codes = [
            (await post(http, router, headers={"Authorization": "Bearer sk-bob-12345"}))[0] for _ in range(4)
        ]
        assert codes == [200] * 4 and a.started == 2
        assert 'event="ejected",source="passive"} 1.0' in _samples(router)


def _samples(router: Router) -> str:
    return "\n".join(
        line for line in router.metrics.exposition().decode().splitlines() if not line.startswith("#")
    )


def _sample(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


async def test_a_key_removed_and_added_back_starts_with_a_fresh_budget(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    keys = key_file(tmp_path, "once:sk-once-key-1 rpm=1")
    auth = {"Authorization": "Bearer sk-once-key-1"}
    other = {"Authorization": "Bearer sk-other-key-1"}
    async with (
        running(quiet(api_keys=keys, api_keys_reload_s=0.02)) as router,
        upstreams(FakeUpstream("a")) as (a,),
    ):
        router.set_endpoints([a.endpoint()])
        assert [(await post(http, router, headers=auth))[0] for _ in range(2)] == [200, 429]

        async def install(line: str, headers: dict[str, str]) -> None:
            keys.write_text(line + "\n")
            for _ in range(250):
                if (await post(http, router, headers=headers))[0] != 401:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"the router never took up {line!r}")

        await install("other:sk-other-key-1", other)  # `once` is gone, and with it its budget
        await install("once:sk-once-key-1 rpm=1", auth)  # this first request is admitted
    assert a.started == 1 + 1 + 1  # before, `other`'s first, and `once` back with a fresh budget


async def test_a_refused_request_costs_no_tokens(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    # Each request is estimated at 257 tokens; 300 a minute admits one. Refused ones (an unknown
    # model, then no endpoint) are given back, so the third still gets through.
    keys = key_file(tmp_path, "tok:sk-token-key-2 tpm=300")
    async with running(quiet(api_keys=keys)) as router, upstreams(FakeUpstream("a")) as (a,):
        auth = {"Authorization": "Bearer sk-token-key-2"}
        router.set_endpoints([a.endpoint()])
        unknown, _, _ = await post(http, router, headers=auth, json={"model": "nope", "prompt": "x"})
        router.set_endpoints([a.endpoint(ready=False)])
        unavailable, _, _ = await post(http, router, headers=auth)
        router.set_endpoints([a.endpoint()])
        served, headers, _ = await post(http, router, headers=auth)
    assert (unknown, unavailable, served) == (404, 503, 200)
    assert int(headers["x-ratelimit-remaining-tokens"]) >= 300 - 257


async def test_token_budgets_are_charged_with_the_engines_count(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # Each request is estimated at 257 tokens (1 prompt + 256 default max_tokens); the fake engine
    # reports 2. Charged by the estimate, the third request would exceed 600 a minute.
    keys = key_file(tmp_path, "tok:sk-token-key-1 tpm=600")
    async with running(quiet(api_keys=keys)) as router, upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        auth = {"Authorization": "Bearer sk-token-key-1"}
        results = [await post(http, router, headers=auth) for _ in range(5)]
    assert [code for code, _, _ in results] == [200] * 5
    remaining = int(results[-1][1]["x-ratelimit-remaining-tokens"])
    assert remaining >= 600 - 257 - 4 * 2 - 2  # only the engine's 2 a request stayed charged
