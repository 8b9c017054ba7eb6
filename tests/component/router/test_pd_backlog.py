"""The prefill backlog against real `phalanx sim` processes: the router learns a prefill engine's
rate from its answers and sends a prompt decode-only when the queue it sent there is too long."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from phalanx.router.policies.pd import PdConfig
from tests.component.router.test_pd_vllm import (
    LONG,
    completion,
    metric,
    no_leak,
    pd_endpoint,
    pd_router,
    start_decode,
    start_prefill,
)
from tests.component.sim.conftest import SimProcess, start_sim, wait_health

__all__ = ["start_sim"]  # fixture, used by name

pytestmark = pytest.mark.component


def long(head: str) -> str:
    """LONG with its own first word: no two share a cached block at the prefill engine."""
    return head + LONG[3:]


# 2 ms per token: the 400-token LONG prompt is about 0.8 s of prefill, one prompt per step.
SLOW_PREFILL = ("--prefill-time-per-token", "0.002", "--max-num-batched-tokens", "512")


async def test_a_prompt_queued_behind_two_long_ones_is_prefilled_on_decode(
    start_sim: Callable[..., SimProcess],
) -> None:
    prefill, decode = start_prefill(start_sim, *SLOW_PREFILL), start_decode(start_sim)
    for sim in (prefill, decode):
        wait_health(sim.port, 200)
    endpoints = [pd_endpoint(prefill, "prefill", "p0"), pd_endpoint(decode, "decode", "d0")]
    # A prior far too fast: only the learned rate can make the queue look long.
    config = PdConfig(max_prefill_wait_s=0.2, prefill_rate_prior=1e6)
    async with pd_router(endpoints, config) as (router, session):
        status, answer = await completion(session, router, long("w0"))  # alone: teaches the rate
        assert status == 200, answer
        learned = router._prefills.backlogs["p0"]
        assert learned.pending == () and learned.rate is not None
        step_s = 300 / learned.rate  # the router's estimate of LONG is 300 tokens
        assert 0.7 < step_s < 3.0

        async def later(n: int) -> tuple[int, object]:
            await asyncio.sleep(0.1 * n)
            return await completion(session, router, long(f"w{n + 1}"))

        # The second waits one step (under the bound: 0.2 s plus its own step), the third two.
        answers = await asyncio.gather(later(0), later(1), later(2))
        assert [status for status, _ in answers] == [200, 200, 200], answers
        skipped = await metric(
            session, router.url, "phalanx_router_pd_prefill_skipped_total", reason="prefill-backlog"
        )
        assert skipped == 1
        assert await metric(session, router.url, "phalanx_router_pd_requests_total", mode="decode_only") == 1
        assert (
            await metric(session, router.url, "phalanx_router_pd_requests_total", mode="disaggregated") == 3
        )
        assert await metric(session, prefill.base_url, "vllm:prompt_tokens_total") == 3 * 400
        assert router._prefills.backlogs["p0"].pending == ()
        await no_leak(session, prefill, decode)
