"""The router's SGLang prefill/decode flow against real `phalanx sim` processes: both requests sent
at once with one bootstrap room, decode's answer relayed, both sides aborted together."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from phalanx.router import Endpoint
from tests.component.sim.conftest import FAST, HOST, SimProcess, free_port, start_sim, wait_health

from .test_pd_vllm import LONG, SHORT, completion, idle, metric, no_leak, pd_router

__all__ = ["start_sim"]  # fixture, used by name

pytestmark = pytest.mark.component

TIMEOUTS = {"SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": "3", "SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "3"}


def start_pair(start: Callable[..., SimProcess], *decode_flags: str) -> tuple[SimProcess, SimProcess, int]:
    port = free_port()
    prefill = start(
        *FAST, "--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port", str(port), env=TIMEOUTS
    )
    decode = start(
        *FAST, "--disaggregation-mode", "decode", "--kv-transfer-bandwidth", "1", *decode_flags, env=TIMEOUTS
    )
    wait_health(prefill.port, 200)
    wait_health(decode.port, 200)
    return prefill, decode, port


def endpoints(prefill: SimProcess | str, decode: SimProcess, bootstrap_port: int) -> list[Endpoint]:
    common = {
        "serving": "demo",
        "group_index": 0,
        "models": ("tiny",),
        "pd_protocol": "sglang",
        "pd_pair_key": "k",
    }
    url = prefill if isinstance(prefill, str) else prefill.base_url
    return [
        Endpoint("p0", url, pd_role="prefill", bootstrap_port=bootstrap_port, **common),  # type: ignore[arg-type]
        Endpoint("d0", decode.base_url, pd_role="decode", **common),  # type: ignore[arg-type]
    ]


async def test_prefill_and_decode_share_a_room_and_decode_answers(
    start_sim: Callable[..., SimProcess],
) -> None:
    prefill, decode, port = start_pair(start_sim)
    async with pd_router(endpoints(prefill, decode, port)) as (router, session):
        status, answer = await completion(session, router, LONG)
        assert status == 200, answer
        assert (answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]) == (400, 5)
        assert await metric(session, prefill.base_url, "vllm:generation_tokens_total") == 1
        assert await metric(session, decode.base_url, "vllm:nixl_xfer_time_seconds_count") == 1
        assert (
            await metric(session, router.url, "phalanx_router_pd_requests_total", mode="disaggregated") == 1
        )
        await no_leak(session, prefill, decode)


async def test_a_streamed_chat_and_a_short_prompt_both_go_through_prefill(
    start_sim: Callable[..., SimProcess],
) -> None:
    # An SGLang decode engine cannot compute a prompt: short ones are prefilled too.
    prefill, decode, port = start_pair(start_sim)
    async with pd_router(endpoints(prefill, decode, port)) as (router, session):
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": SHORT}],
            "max_tokens": 6,
            "stream": True,
        }
        async with session.post(f"{router.url}/v1/chat/completions", json=body) as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
            text = (await r.read()).decode()
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        content = "".join(
            choice["delta"].get("content") or ""
            for event in events[:-1]
            for choice in json.loads(event)["choices"]
        )
        assert content
        assert await metric(session, prefill.base_url, "vllm:generation_tokens_total") == 1
        assert await metric(session, router.url, "phalanx_router_pd_prefill_skipped_total") == 0
        await no_leak(session, prefill, decode)


async def test_an_unreachable_prefill_cancels_decode_and_is_counted(
    start_sim: Callable[..., SimProcess],
) -> None:
    _, decode, port = start_pair(start_sim)
    gone = f"http://{HOST}:{free_port()}"
    async with pd_router(endpoints(gone, decode, port)) as (router, session):
        status, answer = await completion(session, router, LONG)
        assert status == 502, answer  # no other pair to try; nothing was sent to the client before
        failures = "phalanx_router_pd_prefill_failures_total"
        assert (
            await metric(session, router.url, failures, protocol="sglang", reason="prefill-unreachable") == 1
        )
        await idle(session, decode, timeout_s=1.5)  # its request, waiting for the room, was closed


async def test_a_client_hang_up_aborts_both_sides(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode, port = start_pair(start_sim, "--inter-token-latency", "0.1")
    async with pd_router(endpoints(prefill, decode, port)) as (router, session):
        body = {"model": "tiny", "prompt": LONG, "max_tokens": 100, "stream": True}
        async with session.post(f"{router.url}/v1/completions", json=body) as r:
            assert r.status == 200
            assert (await r.content.readline()).startswith(b"data: ")
            r.close()
        await idle(session, decode, timeout_s=2.0)  # else 10 s of decoding
        await idle(session, prefill, timeout_s=2.0)
        await no_leak(session, prefill, decode)


async def test_sglang_decode_without_prefill_is_not_routed_to(start_sim: Callable[..., SimProcess]) -> None:
    _, decode, port = start_pair(start_sim)
    aggregated = start_sim(*FAST)
    wait_health(aggregated.port, 200)
    _, decode_ep = endpoints(f"http://{HOST}:1", decode, port)
    other = Endpoint("a0", aggregated.base_url, "demo", 0, models=("tiny",))
    async with pd_router([decode_ep, other]) as (router, session):
        for _ in range(3):
            status, _ = await completion(session, router, SHORT)
            assert status == 200
        assert await metric(session, decode.base_url, "vllm:prompt_tokens_total") == 0
        assert await metric(session, aggregated.base_url, "vllm:request_success_total") == 3


async def test_requests_get_a_fresh_room_each(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode, port = start_pair(start_sim)
    async with pd_router(endpoints(prefill, decode, port)) as (router, session):
        for _ in range(3):
            status, _ = await completion(session, router, LONG)
            assert status == 200
        assert await metric(session, decode.base_url, "vllm:nixl_xfer_time_seconds_count") == 3
        await no_leak(session, prefill, decode)
