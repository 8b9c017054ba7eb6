"""The router's vLLM prefill/decode flow against real `phalanx sim` processes speaking the protocol:
prefill with `kv_transfer_params`, the KV pulled over the side channel, decode relayed to the client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from phalanx.router import Endpoint
from phalanx.router.endpoints import PdRole
from phalanx.router.policies.pd import PdConfig
from phalanx.router.server import Router, RouterConfig, running
from tests.component.sim.conftest import FAST, HOST, SimProcess, free_port, start_sim, wait_health

__all__ = ["start_sim"]  # fixture, used by name

pytestmark = pytest.mark.component

# 400 one-token words for the simulator (400 tokens), 1200 characters for the router (300 by its
# estimate): long enough for prefill at the default threshold, within --max-model-len 512.
LONG = " ab" * 400
SHORT = "Say hello."


def kv_flags(role: str) -> list[str]:
    config = {
        "kv_connector": "NixlConnector",
        "kv_role": role,
        "kv_connector_extra_config": {"kv_lease_duration": 5},
    }
    return ["--kv-transfer-config", json.dumps(config)]


def side_channel() -> dict[str, str]:
    return {"VLLM_NIXL_SIDE_CHANNEL_HOST": HOST, "VLLM_NIXL_SIDE_CHANNEL_PORT": str(free_port())}


def pd_endpoint(sim: SimProcess | str, role: PdRole | None, name: str) -> Endpoint:
    url = sim if isinstance(sim, str) else sim.base_url
    return Endpoint(
        name=name,
        url=url,
        serving="demo",
        group_index=0,
        models=("tiny",),
        pd_role=role,
        pd_pair_key="demo",
    )


def start_prefill(start: Callable[..., SimProcess], *flags: str) -> SimProcess:
    return start(*FAST, *kv_flags("kv_producer"), *flags, env=side_channel())


def start_decode(start: Callable[..., SimProcess], *flags: str) -> SimProcess:
    # 400 tokens x 128 KiB = 52 MB at 1 GB/s: 52 ms on the wire.
    return start(*FAST, *kv_flags("kv_consumer"), "--kv-transfer-bandwidth", "1", *flags, env=side_channel())


@asynccontextmanager
async def pd_router(
    endpoints: list[Endpoint], pd: PdConfig | None = None
) -> AsyncIterator[tuple[Router, aiohttp.ClientSession]]:
    config = RouterConfig(pd=pd or PdConfig(), scrape_interval_s=None, health_check_interval_s=None)
    async with running(Router(config)) as router, aiohttp.ClientSession() as session:
        router.set_endpoints(endpoints)
        yield router, session


async def metric(session: aiohttp.ClientSession, base_url: str, name: str, **labels: str) -> float:
    """A sample of `name` whose labels include `labels`; 0 when there is none yet."""
    async with session.get(f"{base_url}/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        found = re.match(rf"^{re.escape(name)}(?:{{(.*)}})? (\S+)$", line)
        if found and all(f'{k}="{v}"' in (found.group(1) or "") for k, v in labels.items()):
            total += float(found.group(2))
    return total


async def no_leak(session: aiohttp.ClientSession, *sims: SimProcess) -> None:
    for sim in sims:
        assert await metric(session, sim.base_url, "phalanx_sim_kv_leaked_blocks") == 0
        assert await metric(session, sim.base_url, "phalanx_sim_kv_leased_blocks") == 0


async def idle(session: aiohttp.ClientSession, sim: SimProcess, timeout_s: float = 5.0) -> None:
    """Wait until the engine has nothing running or waiting (requests aborted or finished)."""
    deadline = time.monotonic() + timeout_s
    while True:
        running_now = await metric(session, sim.base_url, "vllm:num_requests_running")
        waiting = await metric(session, sim.base_url, "vllm:num_requests_waiting")
        if running_now == waiting == 0:
            return
        assert time.monotonic() < deadline, (
            f"{sim.base_url} still has {running_now} running, {waiting} waiting"
        )
        await asyncio.sleep(0.05)


async def completion(
    session: aiohttp.ClientSession, router: Router, prompt: str, timeout_s: float | None = None
) -> tuple[int, dict[str, Any]]:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 5}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    url = f"{router.url}/v1/completions"
    async with session.post(url, json=body, headers={"X-Request-Id": "pd-1"}, timeout=timeout) as r:
        return r.status, await r.json()


async def test_a_long_prompt_is_prefilled_then_decoded_with_the_pulled_kv(
    start_sim: Callable[..., SimProcess],
) -> None:
    prefill, decode = start_prefill(start_sim), start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints) as (router, session):
        status, answer = await completion(session, router, LONG)
        assert status == 200, answer
        assert (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]) == (400, 5)
        # Prefill ran the prompt (one token out); decode pulled its KV once and did not prefill it.
        assert await metric(session, prefill.base_url, "vllm:prompt_tokens_total") == 400
        assert await metric(session, prefill.base_url, "vllm:generation_tokens_total") == 1
        assert await metric(session, decode.base_url, "vllm:nixl_xfer_time_seconds_count") == 1
        assert await metric(session, decode.base_url, "vllm:nixl_num_failed_transfers_total") == 0
        assert (
            await metric(session, router.url, "phalanx_router_pd_requests_total", mode="disaggregated") == 1
        )
        assert (
            await metric(session, router.url, "phalanx_router_pd_phase_seconds_count", phase="prefill") == 1
        )
        ttft = await metric(session, router.url, "phalanx_router_pd_time_to_first_token_seconds_sum")
        first = await metric(
            session, router.url, "phalanx_router_pd_phase_seconds_sum", phase="decode_first_byte"
        )
        assert ttft > first >= 0.05  # the transfer is inside decode's first byte; prefill before it
        await no_leak(session, prefill, decode)


async def test_a_streamed_chat_is_relayed_from_decode(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode = start_prefill(start_sim), start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints) as (router, session):
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": LONG}],
            "max_tokens": 8,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with session.post(f"{router.url}/v1/chat/completions", json=body) as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
            text = (await r.read()).decode()
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        usage = json.loads(events[-2])["usage"]
        assert usage["completion_tokens"] == 8  # decode's answer with the client's fields
        assert await metric(session, prefill.base_url, "vllm:generation_tokens_total") == 1
        assert await metric(session, decode.base_url, "vllm:nixl_xfer_time_seconds_count") == 1
        await no_leak(session, prefill, decode)


async def test_short_prompts_never_reach_prefill(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode = start_prefill(start_sim), start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints) as (router, session):
        for _ in range(3):
            status, answer = await completion(session, router, SHORT)
            assert status == 200, answer
        assert await metric(session, prefill.base_url, "vllm:prompt_tokens_total") == 0
        assert await metric(session, decode.base_url, "vllm:nixl_xfer_time_seconds_count") == 0
        assert (
            await metric(
                session, router.url, "phalanx_router_pd_prefill_skipped_total", reason="short-prompt"
            )
            == 3
        )
        assert await metric(session, router.url, "phalanx_router_pd_requests_total", mode="decode_only") == 3
        await no_leak(session, prefill, decode)


async def test_a_prefill_without_kv_params_falls_back_to_decode_only(
    start_sim: Callable[..., SimProcess],
) -> None:
    # A prefill pod started without --kv-transfer-config answers, but with no kv_transfer_params.
    prefill = start_sim(*FAST)
    decode = start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints) as (router, session):
        status, answer = await completion(session, router, LONG)
        assert status == 200 and answer["usage"]["completion_tokens"] == 5
        reason = "no-kv-transfer-params"
        assert await metric(session, router.url, "phalanx_router_pd_fallbacks_total", reason=reason) == 1
        assert await metric(session, router.url, "phalanx_router_pd_requests_total", mode="decode_only") == 1
        assert await metric(session, decode.base_url, "vllm:prompt_tokens_total") == 400  # computed there
        await no_leak(session, decode)


@pytest.mark.parametrize("fault", ["--fault-drop-leases", "--fault-refuse-pulls"])
async def test_a_kv_load_that_fails_falls_back_to_decode_only(
    start_sim: Callable[..., SimProcess], fault: str
) -> None:
    # Prefill answers its kv_transfer_params, but the lease is gone or the pull refused: decode
    # answers 500 before any byte reached the client, so it computes the prompt itself instead.
    prefill, decode = start_prefill(start_sim, fault), start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints) as (router, session):
        status, answer = await completion(session, router, LONG)
        assert status == 200 and answer["usage"]["completion_tokens"] == 5, answer
        assert await metric(session, decode.base_url, "vllm:nixl_num_failed_transfers_total") == 1
        reason = "kv-load-failed"
        assert await metric(session, router.url, "phalanx_router_pd_fallbacks_total", reason=reason) == 1
        assert await metric(session, router.url, "phalanx_router_pd_requests_total", mode="decode_only") == 1
        assert (
            await metric(session, router.url, "phalanx_router_pd_requests_total", mode="disaggregated") == 0
        )
        # A failed KV load is not ill health: the decode engine stays in rotation.
        assert await metric(session, router.url, "phalanx_router_health_events_total") == 0
        # A refused pull leaves the prefill's blocks leased until the lease (5 s) ends them.
        deadline = time.monotonic() + 8
        while await metric(session, prefill.base_url, "phalanx_sim_kv_leased_blocks") > 0:
            assert await metric(session, prefill.base_url, "phalanx_sim_kv_leaked_blocks") == 0
            assert time.monotonic() < deadline, "the lease never ended"
            await asyncio.sleep(0.2)
        await no_leak(session, prefill, decode)


async def test_a_decode_retry_reuses_the_prefilled_kv(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode = start_prefill(start_sim), start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    gone = f"http://{HOST}:{free_port()}"  # "d0" is tried first (round-robin by name) and refuses
    endpoints = [
        pd_endpoint(prefill, "prefill", "p0"),
        pd_endpoint(gone, "decode", "d0"),
        pd_endpoint(decode, "decode", "d1"),
    ]
    async with pd_router(endpoints) as (router, session):
        status, answer = await completion(session, router, LONG)
        assert status == 200, answer
        assert await metric(session, router.url, "phalanx_router_retries_total", endpoint="d0") == 1
        assert await metric(session, prefill.base_url, "vllm:prompt_tokens_total") == 400  # prefilled once
        assert await metric(session, decode.base_url, "vllm:nixl_xfer_time_seconds_count") == 1
        assert (
            await metric(session, router.url, "phalanx_router_pd_requests_total", mode="disaggregated") == 1
        )
        await no_leak(session, prefill, decode)


async def test_an_unreachable_prefill_falls_back(start_sim: Callable[..., SimProcess]) -> None:
    decode = start_decode(start_sim)
    wait_health(decode.port, 200)
    gone = f"http://{HOST}:{free_port()}"  # nothing listens there
    async with pd_router([pd_endpoint(gone, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]) as (
        router,
        session,
    ):
        status, answer = await completion(session, router, LONG)
        assert status == 200, answer
        reason = "prefill-unreachable"
        assert await metric(session, router.url, "phalanx_router_pd_fallbacks_total", reason=reason) == 1


async def test_a_slow_prefill_times_out_is_aborted_and_falls_back(
    start_sim: Callable[..., SimProcess],
) -> None:
    # 400 prompt tokens at 10 ms each: 4 s of prefill against a 0.3 s timeout.
    prefill = start_prefill(start_sim, "--prefill-time-per-token", "0.01")
    decode = start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints, PdConfig(prefill_timeout_s=0.3)) as (router, session):
        started = time.monotonic()
        status, answer = await completion(session, router, LONG)
        assert status == 200 and answer["usage"]["completion_tokens"] == 5
        assert time.monotonic() - started < 2.0
        assert (
            await metric(session, router.url, "phalanx_router_pd_fallbacks_total", reason="prefill-timeout")
            == 1
        )
        # The router closed the prefill request and the engine aborted it (else: 4 s more).
        await idle(session, prefill, timeout_s=1.5)
        await no_leak(session, prefill, decode)


async def test_a_prefill_queued_behind_known_work_is_not_timed_out(
    start_sim: Callable[..., SimProcess],
) -> None:
    # One prompt per step, 2 ms a token: each LONG prompt (400 tokens) takes about 0.83 s, the
    # second waits for the first. The router estimates 300 tokens at 375 tokens/s: 0.8 s each.
    prefill = start_prefill(start_sim, "--prefill-time-per-token", "0.002", "--max-num-batched-tokens", "400")
    decode = start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    pd = PdConfig(prefill_timeout_s=0.3, prefill_rate_prior=375.0)
    async with pd_router(endpoints, pd) as (router, session):

        async def one(request_id: str) -> tuple[int, dict[str, Any]]:
            body = {"model": "tiny", "prompt": LONG, "max_tokens": 5}
            headers = {"X-Request-Id": request_id}
            async with session.post(f"{router.url}/v1/completions", json=body, headers=headers) as r:
                return r.status, await r.json()

        first = asyncio.create_task(one("queued-1"))
        await asyncio.sleep(0.05)  # the first is on its way: the second is planned behind it
        answers = [await one("queued-2"), await first]
        assert [status for status, _ in answers] == [200, 200], answers
        # Each ran past the bare 0.3 s timeout, yet within its expected queue and time plus it.
        fallbacks = await metric(
            session, router.url, "phalanx_router_pd_fallbacks_total", reason="prefill-timeout"
        )
        assert fallbacks == 0
        assert await metric(session, prefill.base_url, "vllm:prompt_tokens_total") >= 800
        await no_leak(session, prefill, decode)


async def test_a_client_hang_up_during_decode_aborts_it(start_sim: Callable[..., SimProcess]) -> None:
    prefill = start_prefill(start_sim)
    decode = start_decode(start_sim, "--inter-token-latency", "0.1")
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints) as (router, session):
        body = {"model": "tiny", "prompt": LONG, "max_tokens": 100, "stream": True}
        async with session.post(f"{router.url}/v1/completions", json=body) as r:
            assert r.status == 200
            assert (await r.content.readline()).startswith(b"data: ")
            r.close()  # the client goes away mid-stream
        await asyncio.sleep(0.1)
        assert await metric(session, decode.base_url, "vllm:num_requests_running") <= 1
        await idle(session, decode)
        await idle(session, prefill)
        await no_leak(session, prefill, decode)


async def test_a_client_hang_up_during_prefill_aborts_it_and_decode_never_starts(
    start_sim: Callable[..., SimProcess],
) -> None:
    prefill = start_prefill(start_sim, "--prefill-time-per-token", "0.01")  # 4 s of prefill
    decode = start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    async with pd_router(endpoints) as (router, session):
        with pytest.raises(TimeoutError):
            await completion(session, router, LONG, timeout_s=0.5)
        await idle(session, prefill, timeout_s=1.5)
        assert await metric(session, decode.base_url, "vllm:prompt_tokens_total") == 0
        await no_leak(session, prefill, decode)


async def test_aggregated_engines_of_the_model_still_serve_whole_requests(
    start_sim: Callable[..., SimProcess],
) -> None:
    prefill, decode, aggregated = start_prefill(start_sim), start_decode(start_sim), start_sim(*FAST)
    for sim in (prefill, decode, aggregated):
        wait_health(sim.port, 200)
    endpoints = [
        pd_endpoint(prefill, "prefill", "p0"),
        pd_endpoint(decode, "decode", "d0"),
        pd_endpoint(aggregated, None, "a0"),
    ]
    async with pd_router(endpoints) as (router, session):
        for i in range(4):  # no prefix in common: least-loaded ties go round-robin over a0 and d0
            status, _ = await completion(session, router, f" x{i}" * 400)
            assert status == 200
        assert await metric(session, router.url, "phalanx_router_pd_requests_total", mode="aggregated") == 2
        assert (
            await metric(session, router.url, "phalanx_router_pd_requests_total", mode="disaggregated") == 2
        )
        assert await metric(session, aggregated.base_url, "vllm:prompt_tokens_total") == 800
        await no_leak(session, prefill, decode)
