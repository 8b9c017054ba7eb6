"""vLLM's prefill/decode flow between two real `phalanx sim` processes on loopback, over plain HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.component.sim.conftest import FAST, HOST, SimProcess, free_port, metric, wait_health

PROMPT = " ".join(f"word{i}" for i in range(100))


def kv_config(role: str, **extra: Any) -> list[str]:
    config: dict[str, Any] = {"kv_connector": "NixlConnector", "kv_role": role}
    config.update(extra)
    return ["--kv-transfer-config", json.dumps(config)]


def start_pair(
    start_sim: Callable[..., SimProcess],
    *,
    prefill_flags: tuple[str, ...] = (),
    decode: dict[str, Any] | None = None,
) -> tuple[SimProcess, SimProcess]:
    side_port = free_port()
    prefill = start_sim(
        *FAST,
        *kv_config("kv_producer", kv_connector_extra_config={"kv_lease_duration": 1.0}),
        *prefill_flags,
        env={"VLLM_NIXL_SIDE_CHANNEL_HOST": HOST, "VLLM_NIXL_SIDE_CHANNEL_PORT": str(side_port)},
    )
    decode_sim = start_sim(
        *FAST,
        *kv_config("kv_consumer", **(decode or {})),
        "--kv-transfer-bandwidth",
        "0.1",  # 100 tokens x 128 KiB = 13.1 MB: 0.13 s on the wire
        env={"VLLM_NIXL_SIDE_CHANNEL_HOST": HOST, "VLLM_NIXL_SIDE_CHANNEL_PORT": str(free_port())},
    )
    wait_health(prefill.port, 200)
    wait_health(decode_sim.port, 200)
    return prefill, decode_sim


async def post(session: aiohttp.ClientSession, sim: SimProcess, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(f"{sim.base_url}/v1/completions", json=body, headers={"X-Request-Id": "r1"}) as r:
        return r.status, await r.json()


async def prefill_step(
    session: aiohttp.ClientSession, sim: SimProcess, max_tokens: int = 1
) -> dict[str, Any]:
    body = {
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "stream": False,
        "kv_transfer_params": {
            "do_remote_decode": True,
            "do_remote_prefill": False,
            "remote_engine_id": None,
            "remote_block_ids": None,
            "remote_host": None,
            "remote_port": None,
        },
    }
    status, answer = await post(session, sim, body)
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


async def test_prefill_leases_kv_and_decode_pulls_it(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode_sim = start_pair(start_sim)
    async with aiohttp.ClientSession() as session:
        answer = await prefill_step(session, prefill)
        params = answer["kv_transfer_params"]
        assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
        assert params["remote_host"] == HOST and params["remote_request_id"] == answer["id"]
        assert len(params["remote_block_ids"][0]) == 7  # 100 tokens + 1 generated in blocks of 16
        assert params["tp_size"] == 1 and params["remote_engine_id"]
        assert await metric(session, prefill, "phalanx_sim_kv_leased_blocks") == 7

        started = time.monotonic()
        status, out = await post(
            session, decode_sim, {"prompt": PROMPT, "max_tokens": 5, "kv_transfer_params": params}
        )
        assert status == 200, out
        assert out["usage"]["completion_tokens"] == 5 and out["kv_transfer_params"] is None
        assert time.monotonic() - started >= 0.13  # the KV took its time on the wire

        assert await metric(session, prefill, "phalanx_sim_kv_leased_blocks") == 0
        assert await metric(session, prefill, "phalanx_sim_kv_leaked_blocks") == 0
        assert await metric(session, decode_sim, "vllm:nixl_xfer_time_seconds_count") == 1
        assert await metric(session, decode_sim, "vllm:nixl_xfer_time_seconds_sum") >= 0.13
        # Decode did not prefill the prompt: its first step computed one token only.
        assert await metric(session, decode_sim, "vllm:time_to_first_token_seconds_sum") < 0.5

        # A streamed decode, as routers send it: the events come after the pull.
        params_2 = (await prefill_step(session, prefill))["kv_transfer_params"]
        stream_body = {"prompt": PROMPT, "max_tokens": 4, "stream": True, "kv_transfer_params": params_2}
        async with session.post(f"{decode_sim.base_url}/v1/completions", json=stream_body) as r:
            assert r.status == 200
            events = [line for line in (await r.text()).split("\n\n") if line]
        assert events[-1] == "data: [DONE]" and len(events) == 5
        assert await metric(session, prefill, "phalanx_sim_kv_leased_blocks") == 0

        # The same lease a second time: it is gone, so the pull fails (policy "fail").
        status, out = await post(
            session, decode_sim, {"prompt": PROMPT, "max_tokens": 5, "kv_transfer_params": params}
        )
        assert status == 500 and "KV load failed" in out["error"]["message"]
        assert await metric(session, decode_sim, "vllm:nixl_num_failed_transfers_total") == 1
        assert await metric(session, decode_sim, "vllm:nixl_xfer_time_seconds_count") == 2


async def test_no_lease_when_prefill_ends_before_the_length_cap(start_sim: Callable[..., SimProcess]) -> None:
    prefill, _ = start_pair(start_sim)
    async with aiohttp.ClientSession() as session:
        answer = await prefill_step(session, prefill, max_tokens=1)
        first_word = answer["choices"][0]["text"].strip()
        body = {
            "prompt": PROMPT,
            "max_tokens": 1,
            "stop": [first_word],
            "kv_transfer_params": {"do_remote_decode": True},
        }
        status, out = await post(session, prefill, body)
        assert status == 200 and out["choices"][0]["finish_reason"] == "stop"
        assert out["kv_transfer_params"] is None
        # Only the first request's lease is held.
        assert await metric(session, prefill, "phalanx_sim_kv_leased_blocks") == 7


async def test_expired_lease_fails_or_recomputes_and_nothing_leaks(
    start_sim: Callable[..., SimProcess],
) -> None:
    prefill, failing = start_pair(start_sim)
    recompute = start_sim(
        *FAST,
        *kv_config("kv_consumer", kv_load_failure_policy="recompute"),
        env={"VLLM_NIXL_SIDE_CHANNEL_HOST": HOST, "VLLM_NIXL_SIDE_CHANNEL_PORT": str(free_port())},
    )
    wait_health(recompute.port, 200)
    async with aiohttp.ClientSession() as session:
        params = (await prefill_step(session, prefill))["kv_transfer_params"]
        await asyncio.sleep(1.3)  # kv_lease_duration is 1 s
        assert await metric(session, prefill, "vllm:nixl_num_kv_expired_reqs_total") == 1
        assert await metric(session, prefill, "phalanx_sim_kv_leased_blocks") == 0
        body = {"prompt": PROMPT, "max_tokens": 3, "kv_transfer_params": params}
        status, out = await post(session, failing, body)
        assert status == 500 and "expired" in out["error"]["message"]
        status, out = await post(session, recompute, body)
        assert status == 200 and out["usage"]["completion_tokens"] == 3
        unknown = {**params, "remote_request_id": "cmpl-never-made"}
        status, out = await post(session, failing, {**body, "kv_transfer_params": unknown})
        assert status == 500 and "unknown" in out["error"]["message"]
        for sim in (prefill, failing, recompute):
            assert await metric(session, sim, "phalanx_sim_kv_leaked_blocks") == 0


async def test_decode_client_abort_still_frees_the_lease(start_sim: Callable[..., SimProcess]) -> None:
    prefill, decode_sim = start_pair(start_sim, prefill_flags=("--fault-bootstrap-delay", "0.5"))
    async with aiohttp.ClientSession() as session:
        params = (await prefill_step(session, prefill))["kv_transfer_params"]
        body = {"prompt": PROMPT, "max_tokens": 3, "kv_transfer_params": params}
        request = asyncio.create_task(post(session, decode_sim, body))
        await asyncio.sleep(0.2)  # the pull waits on the delayed side channel
        request.cancel()
        await asyncio.sleep(1.5)  # past the delay and the 1 s lease
        assert await metric(session, prefill, "phalanx_sim_kv_leased_blocks") == 0
        assert await metric(session, prefill, "phalanx_sim_kv_leaked_blocks") == 0
        assert await metric(session, decode_sim, "phalanx_sim_kv_leaked_blocks") == 0


async def test_faults_drop_leases_and_refuse_pulls(start_sim: Callable[..., SimProcess]) -> None:
    for fault, reason in (("--fault-drop-leases", "expired"), ("--fault-refuse-pulls", "refused")):
        prefill, decode_sim = start_pair(start_sim, prefill_flags=(fault,))
        async with aiohttp.ClientSession() as session:
            params = (await prefill_step(session, prefill))["kv_transfer_params"]
            assert params["do_remote_prefill"] is True
            body = {"prompt": PROMPT, "max_tokens": 3, "kv_transfer_params": params}
            status, out = await post(session, decode_sim, body)
            assert status == 500 and reason in out["error"]["message"], out
