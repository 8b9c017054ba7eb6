"""The router's hook for an autoscaler in the same process: told the model of each request that
starts waiting for a first endpoint, and nothing else."""

from __future__ import annotations

import aiohttp
import pytest

from phalanx.router import Router, RouterConfig
from phalanx.router.admission import AdmissionConfig
from phalanx.router.declared import declared_by_servings
from tests.component.router.test_zero import MODEL, zero_replica_serving

pytestmark = pytest.mark.component


async def test_a_request_held_at_zero_is_reported_once_by_model() -> None:
    router = Router(RouterConfig(admission=AdmissionConfig(queue_timeout_s=0.5)))
    told: list[str] = []
    router.on_held = told.append
    await router.start("127.0.0.1", 0)
    try:
        router.set_declared(declared_by_servings([zero_replica_serving()]))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            body = {"model": MODEL, "prompt": "hello", "max_tokens": 4}
            async with http.post(f"{router.url}/v1/completions", json=body) as resp:
                assert resp.status == 504  # nothing started it: the queue's deadline answers
            assert told == [MODEL]
            # A model nobody declares is not held: the hook hears nothing of it.
            async with http.post(f"{router.url}/v1/completions", json={**body, "model": "other"}) as resp:
                assert resp.status == 404
            assert told == [MODEL]
    finally:
        await router.stop()
