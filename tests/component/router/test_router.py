from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import openai
import pytest
from yarl import URL

from phalanx.router import Endpoint, Router, RouterConfig
from phalanx.router.server import running

from .fakes import FakeUpstream, eventually, refused_url, sse_events, upstreams

pytestmark = pytest.mark.component


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    r = Router(RouterConfig(connect_timeout_s=1.0, total_timeout_s=10.0, drain_timeout_s=2.0))
    await r.start("127.0.0.1", 0)
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def client(router: Router) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="test", max_retries=0, timeout=10.0)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def test_non_streaming_pass_through(router: Router, client: openai.AsyncOpenAI) -> None:
    async with upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        raw = await client.completions.with_raw_response.create(
            model="m", prompt="hi", extra_headers={"X-Request-Id": "req-1", "X-Tenant": "t"}
        )
        completion = raw.parse()
        assert completion.choices[0].text == "a"
        assert raw.headers["X-Request-Id"] == "req-1"
        assert raw.headers["X-Upstream"] == "a"
        seen = a.received[0]
        assert seen["headers"]["X-Request-Id"] == "req-1"
        assert seen["headers"]["X-Tenant"] == "t"
        assert seen["headers"]["Authorization"] == "Bearer test"
        assert seen["body"]["prompt"] == "hi"
        assert router.in_flight() == {"a": 0}


async def test_a_cookie_an_endpoint_sets_goes_to_that_client_only(
    router: Router, http: aiohttp.ClientSession
) -> None:
    async with upstreams(FakeUpstream("a", sets_cookie=True)) as (a,):
        # By name, not by IP: aiohttp's default cookie jar ignores cookies from IP addresses.
        router.set_endpoints([replace(a.endpoint(), url=a.url.replace("127.0.0.1", "localhost"))])
        first_client = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        async with (
            first_client,
            first_client.post(f"{router.url}/v1/completions", json={"model": "m"}) as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Set-Cookie"].startswith("seen=a")  # passed on to its client
        async with http.post(f"{router.url}/v1/completions", json={"model": "m"}) as resp:
            assert resp.status == 200
        assert [r["headers"].get("Cookie") for r in a.received] == [None, None]


async def test_the_query_string_goes_on_as_the_client_encoded_it(
    router: Router, http: aiohttp.ClientSession
) -> None:
    async with upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        url = URL(f"{router.url}/v1/completions?a=%23b&c=%26d%3De&f=x%20y", encoded=True)
        async with http.post(url, json={"model": "m"}) as resp:
            assert resp.status == 200
        assert a.received[0]["query"] == "a=%23b&c=%26d%3De&f=x%20y"


async def test_a_compressed_request_body_reaches_the_endpoint_readable(
    router: Router, http: aiohttp.ClientSession
) -> None:
    # aiohttp decodes the body on arrival: it must not go on still labelled gzip.
    async with upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        body = gzip.compress(json.dumps({"model": "m", "prompt": "zipped"}).encode())
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with http.post(f"{router.url}/v1/completions", data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
        assert a.received[0]["body"]["prompt"] == "zipped"
        assert "Content-Encoding" not in a.received[0]["headers"]


async def test_request_id_is_added_when_absent(router: Router, http: aiohttp.ClientSession) -> None:
    async with upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        async with http.post(f"{router.url}/v1/embeddings", json={"model": "m", "input": "x"}) as resp:
            assert resp.status == 200
            rid = resp.headers["X-Request-Id"]
        assert a.received[0]["headers"]["X-Request-Id"] == rid
        assert a.received[0]["path"] == "/v1/embeddings"


async def test_streaming_is_byte_for_byte(router: Router, http: aiohttp.ClientSession) -> None:
    async with upstreams(FakeUpstream("a", events=32, stream_pause_s=0.002)) as (a,):
        router.set_endpoints([a.endpoint()])
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with http.post(f"{router.url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            chunks = [chunk async for chunk in resp.content.iter_any()]
        assert b"".join(chunks) == a.stream_bytes()
        # Relayed as it arrived, not collected into one body.
        assert len(chunks) > 1


async def test_the_head_is_not_held_back_for_a_slow_first_token(
    router: Router, http: aiohttp.ClientSession
) -> None:
    # The head waits briefly to leave with the first bytes; a slow first token must not delay it.
    async with upstreams(FakeUpstream("a", events=2, first_event_delay_s=1.0)) as (a,):
        router.set_endpoints([a.endpoint()])
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        loop = asyncio.get_running_loop()
        sent = loop.time()
        async with http.post(f"{router.url}/v1/chat/completions", json=body) as resp:
            head_after = loop.time() - sent
            assert resp.status == 200
            assert await resp.read() == a.stream_bytes()
            body_after = loop.time() - sent
        assert head_after < 0.5
        assert body_after >= 1.0


async def test_streaming_through_the_openai_client(router: Router, client: openai.AsyncOpenAI) -> None:
    async with upstreams(FakeUpstream("a", events=5)) as (a,):
        router.set_endpoints([a.endpoint()])
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text == "a0 a1 a2 a3 a4 "


def sync_client_calls(url: str) -> tuple[list[str], list[str], list[str]]:
    """Non-streamed and streamed completions through the blocking `openai` client, three of each
    on its kept-alive connections; the texts and each answer's request id."""
    texts, streamed, ids = [], [], []
    with openai.OpenAI(base_url=f"{url}/v1", api_key="test", max_retries=0, timeout=10.0) as c:
        for _ in range(3):
            raw = c.completions.with_raw_response.create(model="m", prompt="hi")
            texts.append(raw.parse().choices[0].text)
            ids.append(raw.headers["X-Request-Id"])
            with c.chat.completions.create(model="m", messages=[], stream=True) as stream:
                streamed.append("".join(ch.choices[0].delta.content or "" for ch in stream))
    return texts, streamed, ids


async def test_the_blocking_openai_client_on_the_front(router: Router) -> None:
    assert router.config.front == "httptools"
    async with upstreams(FakeUpstream("a", events=3)) as (a,):
        router.set_endpoints([a.endpoint()])
        texts, streamed, ids = await asyncio.to_thread(sync_client_calls, router.url)
        assert texts == ["a"] * 3 and streamed == ["a0 a1 a2 "] * 3
        assert len(set(ids)) == 3


async def test_least_in_flight_spreads_concurrent_slow_requests(
    router: Router, client: openai.AsyncOpenAI
) -> None:
    gate = asyncio.Event()
    async with upstreams(FakeUpstream("a", gate=gate), FakeUpstream("b", gate=gate)) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        calls = [asyncio.create_task(client.completions.create(model="m", prompt="x")) for _ in range(6)]
        await eventually(lambda: a.started + b.started == 6)
        assert (a.started, b.started) == (3, 3)
        assert router.in_flight() == {"a": 3, "b": 3}
        gate.set()
        results = await asyncio.gather(*calls)
        assert sorted(r.choices[0].text for r in results) == ["a"] * 3 + ["b"] * 3
        assert router.in_flight() == {"a": 0, "b": 0}


async def test_busy_endpoint_is_avoided_not_round_robined(router: Router, client: openai.AsyncOpenAI) -> None:
    gate = asyncio.Event()
    async with upstreams(FakeUpstream("a", gate=gate), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        held = asyncio.create_task(client.completions.create(model="m", prompt="x"))
        await eventually(lambda: a.started == 1)
        for _ in range(4):
            assert (await client.completions.create(model="m", prompt="x")).choices[0].text == "b"
        gate.set()
        assert (await held).choices[0].text == "a"


async def test_connect_refused_is_retried_elsewhere(router: Router, client: openai.AsyncOpenAI) -> None:
    async with upstreams(FakeUpstream("b")) as (b,):
        # "a-dead" sorts first, so the first pick goes to it.
        dead = Endpoint(name="a-dead", url=refused_url(), serving="demo", group_index=0, models=("m",))
        router.set_endpoints([dead, b.endpoint()])
        completion = await client.completions.create(model="m", prompt="x")
        assert completion.choices[0].text == "b"
        assert router.in_flight() == {"a-dead": 0, "b": 0}
        text = router.metrics.exposition().decode()
        assert 'phalanx_router_retries_total{endpoint="a-dead",reason="ClientConnectorError"} 1.0' in text


async def test_upstream_503_is_retried_elsewhere(router: Router, client: openai.AsyncOpenAI) -> None:
    async with upstreams(FakeUpstream("a", mode="503"), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        assert (await client.completions.create(model="m", prompt="x")).choices[0].text == "b"
        assert a.started == 1


async def test_reset_before_first_byte_is_retried_elsewhere(
    router: Router, client: openai.AsyncOpenAI
) -> None:
    async with upstreams(FakeUpstream("a", mode="reset"), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        assert (await client.completions.create(model="m", prompt="x")).choices[0].text == "b"
        assert (a.started, b.started) == (1, 1)


async def test_every_endpoint_overloaded_is_503_with_retry_after(
    router: Router, client: openai.AsyncOpenAI
) -> None:
    fakes = [FakeUpstream(n, mode="503") for n in ("a", "b", "c", "d")]
    async with upstreams(*fakes):
        router.set_endpoints([f.endpoint() for f in fakes])
        with pytest.raises(openai.APIStatusError) as info:
            await client.completions.create(model="m", prompt="x")
        assert info.value.status_code == 503
        assert info.value.response.headers["Retry-After"] == "1"
        # Bounded: max_attempts (3) endpoints tried, not all four.
        assert sum(f.started for f in fakes) == 3


@pytest.mark.parametrize("stream", [True, False])
async def test_an_endpoint_dying_after_its_head_is_retried_elsewhere(
    router: Router, client: openai.AsyncOpenAI, stream: bool
) -> None:
    # The router holds the head back for the first body bytes: none came, none went out, so the
    # request may still go to another endpoint.
    async with upstreams(FakeUpstream("a", mode="die-after-head"), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        for _ in range(2):  # whichever the policy tries first
            if stream:
                chunks = await client.chat.completions.create(model="m", messages=[], stream=True)
                text = "".join([c.choices[0].delta.content or "" async for c in chunks])
                assert text.startswith("b0 ")
            else:
                completion = await client.completions.create(model="m", prompt="x")
                assert completion.choices[0].text == "b"
        assert a.started >= 1 and b.started == 2
        assert 'reason="failed_before_body"' in router.metrics.exposition().decode()


async def test_all_endpoints_refusing_gives_502(router: Router, client: openai.AsyncOpenAI) -> None:
    router.set_endpoints(
        [
            Endpoint(name=f"d{i}", url=refused_url(), serving="demo", group_index=i, models=("m",))
            for i in range(2)
        ]
    )
    with pytest.raises(openai.APIStatusError) as info:
        await client.completions.create(model="m", prompt="x")
    assert info.value.status_code == 502


# With a declared length the stream must still end: it goes to the client chunked.
@pytest.mark.parametrize("mode", ["die-mid-stream", "die-mid-stream-with-length"])
async def test_upstream_dying_mid_stream_ends_the_stream_cleanly(
    router: Router, http: aiohttp.ClientSession, mode: str
) -> None:
    async with upstreams(FakeUpstream("a", mode=mode), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        body = {"model": "m", "messages": [], "stream": True}
        async with http.post(f"{router.url}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            raw = await asyncio.wait_for(resp.read(), 3)
        events = raw.split(b"\n\n")
        assert raw.startswith(b"".join(sse_events("a", a.events)[:3]))
        assert raw.endswith(b"data: [DONE]\n\n")
        error = json.loads(events[-3].removeprefix(b"data: "))
        assert error["error"]["code"] == 502
        # Three whole events, then the error and [DONE]: the half event was held back.
        assert len([e for e in events if e]) == 5
        # Never retried once bytes went out.
        assert (a.started, b.started) == (1, 0)
        assert router.in_flight() == {"a": 0, "b": 0}
        text = router.metrics.exposition().decode()
        assert 'phalanx_router_stream_failures_total{endpoint="a"} 1.0' in text


async def test_upstream_dying_mid_body_aborts_the_client_connection(
    router: Router, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    async with upstreams(FakeUpstream("a", mode="die-mid-body"), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        async with http.post(f"{router.url}/v1/completions", json={"model": "m"}) as resp:
            assert resp.status == 200
            # A truncated body must not look complete to the client.
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert (a.started, b.started) == (1, 0)
        await eventually(lambda: router.in_flight() == {"a": 0, "b": 0})
    assert "Traceback" not in caplog.text
    assert "Error handling request" not in caplog.text


async def test_mid_stream_failure_surfaces_in_the_openai_client(
    router: Router, client: openai.AsyncOpenAI
) -> None:
    async with upstreams(FakeUpstream("a", mode="die-mid-stream")) as (a,):
        router.set_endpoints([a.endpoint()])
        stream = await client.chat.completions.create(model="m", messages=[], stream=True)
        seen = []
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content)
        assert seen == ["a0 ", "a1 ", "a2 "]


async def test_no_endpoints_is_503_with_retry_after(router: Router, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        await client.completions.create(model="m", prompt="x")
    assert info.value.status_code == 503
    assert info.value.response.headers["Retry-After"] == "1"
    assert "retry later" in info.value.message


async def test_bad_requests_get_openai_errors(
    router: Router, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    async with upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint()])
        with pytest.raises(openai.NotFoundError) as nf:
            await client.completions.create(model="nope", prompt="x")
        assert "The model `nope` does not exist." in nf.value.message
        async with http.post(f"{router.url}/v1/completions", data=b"{oops") as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "BadRequestError"
        async with http.post(f"{router.url}/v1/completions", json={"prompt": "x"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "model"
        async with http.get(f"{router.url}/v1/nothing-here") as resp:
            assert resp.status == 404
            assert "error" in await resp.json()
        async with http.get(f"{router.url}/v1/completions") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "POST"
        assert a.started == 0


async def test_a_body_over_the_limit_is_413_and_reaches_no_endpoint(http: aiohttp.ClientSession) -> None:
    async with upstreams(FakeUpstream("a")) as (a,), running(Router(RouterConfig(client_max_size=1024))) as r:
        r.set_endpoints([a.endpoint()])
        big = {"model": "m", "prompt": "x" * 2048}
        async with http.post(f"{r.url}/v1/completions", json=big) as resp:
            assert resp.status == 413
            error = (await resp.json())["error"]
        assert error["code"] == "request_too_large"
        assert "1024 bytes" in error["message"]
        assert "--max-body-mib" in error["message"]
        async with http.post(f"{r.url}/v1/completions", json={"model": "m", "prompt": "x"}) as resp:
            assert resp.status == 200
        assert a.started == 1
        metrics = r.metrics.exposition().decode()
        assert 'phalanx_router_errors_total{kind="body_too_large"} 1.0' in metrics
        assert 'code="413"' in metrics


async def test_draining_endpoint_finishes_but_gets_nothing_new(
    router: Router, client: openai.AsyncOpenAI
) -> None:
    gate = asyncio.Event()
    async with upstreams(FakeUpstream("a", gate=gate), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint(), b.endpoint()])
        b.gate = asyncio.Event()  # hold b too, so "a" would be least loaded next
        first = [asyncio.create_task(client.completions.create(model="m", prompt="x")) for _ in range(2)]
        await eventually(lambda: (a.started, b.started) == (1, 1))
        router.set_endpoints([a.endpoint(draining=True), b.endpoint()])
        later = [asyncio.create_task(client.completions.create(model="m", prompt="x")) for _ in range(3)]
        await eventually(lambda: b.started == 4)
        assert a.started == 1
        assert router.in_flight() == {"a": 1, "b": 4}
        gate.set()
        b.gate.set()
        texts = [r.choices[0].text for r in await asyncio.gather(*first, *later)]
        assert sorted(texts) == ["a", "b", "b", "b", "b"]
        assert router.in_flight() == {"a": 0, "b": 0}


async def test_removed_endpoint_finishes_its_requests(router: Router, client: openai.AsyncOpenAI) -> None:
    gate = asyncio.Event()
    async with upstreams(FakeUpstream("a", gate=gate), FakeUpstream("b")) as (a, b):
        router.set_endpoints([a.endpoint()])
        held = asyncio.create_task(client.completions.create(model="m", prompt="x"))
        await eventually(lambda: a.started == 1)
        router.set_endpoints([b.endpoint()])
        assert router.in_flight() == {"a": 1, "b": 0}
        gate.set()
        assert (await held).choices[0].text == "a"
        assert router.in_flight() == {"b": 0}


async def test_client_disconnect_cancels_upstream(router: Router, http: aiohttp.ClientSession) -> None:
    async with upstreams(FakeUpstream("a", events=200, stream_pause_s=0.02)) as (a,):
        router.set_endpoints([a.endpoint()])
        body = {"model": "m", "messages": [], "stream": True}
        resp = await http.post(f"{router.url}/v1/chat/completions", json=body)
        assert await resp.content.readuntil(b"\n\n")
        assert router.in_flight() == {"a": 1}
        resp.close()
        await eventually(lambda: a.cancelled == 1)
        await eventually(lambda: router.in_flight() == {"a": 0})
        text = router.metrics.exposition().decode()
        assert 'phalanx_router_requests_total{code="499",endpoint="a",model="m"} 1.0' in text


async def test_client_disconnect_before_answer_cancels_upstream(
    router: Router, http: aiohttp.ClientSession
) -> None:
    async with upstreams(FakeUpstream("a", gate=asyncio.Event())) as (a,):
        router.set_endpoints([a.endpoint()])
        call = asyncio.create_task(http.post(f"{router.url}/v1/completions", json={"model": "m"}))
        await eventually(lambda: a.started == 1)
        call.cancel()
        await eventually(lambda: a.cancelled == 1)
        await eventually(lambda: router.in_flight() == {"a": 0})


async def test_models_are_learned_and_listed(router: Router, client: openai.AsyncOpenAI) -> None:
    async with upstreams(FakeUpstream("a", models=("m1", "m2")), FakeUpstream("b", models=("m3",))) as (a, b):
        router.set_endpoints([a.endpoint(models=()), b.endpoint(draining=True)])
        listed = [m async for m in client.models.list()]
        assert [m.id for m in listed] == ["m1", "m2"]
        assert {m.owned_by for m in listed} == {"phalanx"}
        assert (await client.completions.create(model="m2", prompt="x")).choices[0].text == "a"


async def test_health_and_metrics(
    router: Router, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{router.url}/health") as resp:
        assert resp.status == 503
    async with upstreams(FakeUpstream("a", stream_pause_s=0.001)) as (a,):
        router.set_endpoints([a.endpoint()])
        async with http.get(f"{router.url}/health") as resp:
            assert resp.status == 200
            assert (await resp.json())["ready_backends"] == 1
        await client.completions.create(model="m", prompt="x")
        stream = await client.chat.completions.create(model="m", messages=[], stream=True)
        _ = [c async for c in stream]
    async with http.get(f"{router.url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert 'phalanx_router_requests_total{code="200",endpoint="a",model="m"} 2.0' in text
    assert 'phalanx_router_in_flight_requests{endpoint="a"} 0.0' in text
    assert 'phalanx_router_request_duration_seconds_count{endpoint="a",model="m"} 2.0' in text
    assert 'phalanx_router_time_to_first_byte_seconds_count{model="m"} 2.0' in text
    # Only the stream has a first token and gaps between events (8 events, then [DONE]: 8 gaps).
    assert 'phalanx_router_time_to_first_token_seconds_count{endpoint="a",model="m"} 1.0' in text
    itl = next(
        line
        for line in text.splitlines()
        if line.startswith("phalanx_router_inter_token_latency_seconds_count")
    )
    assert float(itl.rsplit(" ", 1)[1]) == 8
    assert "phalanx_router_no_endpoint_rejections_total" in text


async def test_stop_waits_for_in_flight_requests() -> None:
    gate = asyncio.Event()
    router = Router(RouterConfig(drain_timeout_s=5.0))
    await router.start()
    async with upstreams(FakeUpstream("a", gate=gate)) as (a,), aiohttp.ClientSession() as http:
        router.set_endpoints([a.endpoint()])
        call = asyncio.create_task(http.post(f"{router.url}/v1/completions", json={"model": "m"}))
        await eventually(lambda: a.started == 1)
        stopping = asyncio.create_task(router.stop())
        await asyncio.sleep(0.1)
        assert not stopping.done()
        gate.set()
        resp = await call
        assert resp.status == 200
        assert (await resp.json())["choices"][0]["text"] == "a"
        resp.release()
        await stopping


async def test_model_names_from_clients_do_not_become_metric_labels(
    router: Router, http: aiohttp.ClientSession
) -> None:
    # Nothing is routable: every name is "unavailable", but only declared names are labelled.
    async with upstreams(FakeUpstream("a")) as (a,):
        router.set_endpoints([a.endpoint(ready=False)])
        for index in range(20):
            body = {"model": f"typo-{index}", "prompt": "x"}
            async with http.post(f"{router.url}/v1/completions", json=body) as resp:
                assert resp.status == 503
        async with http.post(f"{router.url}/v1/completions", json={"model": "m", "prompt": "x"}) as resp:
            assert resp.status == 503
        async with http.get(f"{router.url}/metrics") as resp:
            text = await resp.text()
    assert "typo-" not in text
    assert 'phalanx_router_no_endpoint_rejections_total{model="m"} 1.0' in text


async def test_a_replaced_pod_is_asked_for_its_models_again(
    router: Router, client: openai.AsyncOpenAI
) -> None:
    async with upstreams(FakeUpstream("a", models=("old",))) as (a,):
        router.set_endpoints([a.endpoint(models=())])
        assert [m.id async for m in client.models.list()] == ["old"]
        # Same pod name, same address, new engine: it is not ready for a moment, then serves "new".
        router.set_endpoints([a.endpoint(models=(), ready=False)])
        a.models = ("new",)
        router.set_endpoints([a.endpoint(models=())])
        assert [m.id async for m in client.models.list()] == ["new"]


async def test_access_log_is_one_json_line_with_the_request_id_and_no_prompt(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router(RouterConfig(access_log=True))
    await router.start()
    try:
        async with upstreams(FakeUpstream("a")) as (a,):
            router.set_endpoints([a.endpoint()])
            body = {"model": "m", "prompt": "a secret prompt"}
            with caplog.at_level(logging.INFO, logger="phalanx.router.access"):
                async with http.post(
                    f"{router.url}/v1/completions", json=body, headers={"X-Request-Id": "req-42"}
                ) as resp:
                    assert resp.status == 200 and resp.headers["X-Request-Id"] == "req-42"
                async with http.post(f"{router.url}/v1/completions", data=b"{") as resp:
                    assert resp.status == 400 and resp.headers["X-Request-Id"]
    finally:
        await router.stop()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "phalanx.router.access"]
    assert lines[0] == {
        "request_id": "req-42",
        "method": "POST",
        "path": "/v1/completions",
        "model": "m",
        "endpoint": "a",
        "status": 200,
        "attempts": 1,
        "duration_ms": lines[0]["duration_ms"],
    }
    assert lines[1]["status"] == 400 and lines[1]["error"] == "bad_request"
    assert "secret" not in caplog.text
