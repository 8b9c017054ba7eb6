"""SGLang's prefill/decode flow between two real `phalanx sim` processes: both requests carry the
bootstrap fields and are sent together, in either order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.component.sim.conftest import FAST, HOST, SimProcess, free_port, metric, wait_health

PROMPT = " ".join(f"word{i}" for i in range(100))


def start_pair(
    start_sim: Callable[..., SimProcess], *prefill_flags: str, timeout: str = "2"
) -> tuple[SimProcess, SimProcess, int]:
    bootstrap_port = free_port()
    env = {
        "SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": timeout,
        "SGLANG_DISAGGREGATION_WAITING_TIMEOUT": timeout,
    }
    prefill = start_sim(
        *FAST,
        "--disaggregation-mode",
        "prefill",
        "--disaggregation-bootstrap-port",
        str(bootstrap_port),
        *prefill_flags,
        env=env,
    )
    decode_sim = start_sim(
        *FAST, "--disaggregation-mode", "decode", "--kv-transfer-bandwidth", "0.1", env=env
    )
    wait_health(prefill.port, 200)
    wait_health(decode_sim.port, 200)
    return prefill, decode_sim, bootstrap_port


def body(bootstrap_port: int, room: int, max_tokens: int = 5) -> dict[str, Any]:
    return {
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "bootstrap_host": HOST,
        "bootstrap_port": bootstrap_port,
        "bootstrap_room": room,
    }


async def post(session: aiohttp.ClientSession, sim: SimProcess, payload: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(f"{sim.base_url}/v1/completions", json=payload) as r:
        return r.status, await r.json()


async def test_both_orders_transfer_the_kv_and_free_it(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode_sim, port = start_pair(start_sim)
    async with aiohttp.ClientSession() as session:
        # Sent together: prefill waits for decode to join the room, decode waits for the KV.
        (p_status, p_out), (d_status, d_out) = await asyncio.gather(
            post(session, prefill, body(port, 7)), post(session, decode_sim, body(port, 7))
        )
        assert p_status == 200 and p_out["usage"]["completion_tokens"] == 1, p_out
        assert d_status == 200 and d_out["usage"]["completion_tokens"] == 5, d_out

        # Decode first, prefill a little later.
        decode_task = asyncio.create_task(post(session, decode_sim, body(port, 8)))
        await asyncio.sleep(0.3)
        p_status, _ = await post(session, prefill, body(port, 8))
        d_status, d_out = await decode_task
        assert (p_status, d_status) == (200, 200), d_out

        assert await metric(session, decode_sim, "vllm:nixl_xfer_time_seconds_count") == 2
        assert await metric(session, decode_sim, "vllm:nixl_xfer_time_seconds_sum") >= 0.26
        for sim in (prefill, decode_sim):
            assert await metric(session, sim, "phalanx_sim_kv_leased_blocks") == 0
            assert await metric(session, sim, "phalanx_sim_kv_leaked_blocks") == 0


async def test_prefill_aborts_when_decode_never_joins(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode_sim, port = start_pair(start_sim, timeout="0.5")
    async with aiohttp.ClientSession() as session:
        status, out = await post(session, prefill, body(port, 9))
        assert status == 500 and "did not connect within 0.5 s" in out["error"]["message"]
        # A decode request whose prefill never comes gives up after its waiting timeout.
        status, out = await post(session, decode_sim, body(port, 10))
        assert status == 500 and "KV load failed" in out["error"]["message"]
        for sim in (prefill, decode_sim):
            assert await metric(session, sim, "phalanx_sim_kv_leaked_blocks") == 0


async def test_cancel_on_either_side_frees_everything(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode_sim, port = start_pair(start_sim, "--fault-bootstrap-delay", "0.3")
    async with aiohttp.ClientSession() as session:
        # The decode client hangs up while the room is being set up: prefill fails, nothing is held.
        prefill_task = asyncio.create_task(post(session, prefill, body(port, 11)))
        decode_task = asyncio.create_task(post(session, decode_sim, body(port, 11)))
        await asyncio.sleep(0.1)
        decode_task.cancel()
        status, _ = await prefill_task
        assert status in (200, 500)
        # The prefill client hangs up while waiting for decode: decode is told, nothing is held.
        prefill_task = asyncio.create_task(post(session, prefill, body(port, 12)))
        await asyncio.sleep(0.1)
        prefill_task.cancel()
        status, out = await post(session, decode_sim, body(port, 12))
        assert status == 500, out
        await asyncio.sleep(2.5)  # past every timeout
        for sim in (prefill, decode_sim):
            assert await metric(session, sim, "phalanx_sim_kv_leased_blocks") == 0
            assert await metric(session, sim, "phalanx_sim_kv_leaked_blocks") == 0


async def test_a_disaggregated_engine_needs_the_bootstrap_fields(
    start_sim: Callable[..., SimProcess],
) -> None:
    prefill, _, _ = start_pair(start_sim)
    async with aiohttp.ClientSession() as session:
        status, out = await post(session, prefill, {"prompt": PROMPT, "max_tokens": 2})
        assert status == 400 and out["error"]["param"] == "bootstrap_room"
