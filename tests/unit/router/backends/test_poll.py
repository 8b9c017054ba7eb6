from __future__ import annotations

import asyncio
import random

import pytest

from phalanx.router.backends.poll import Poller
from phalanx.router.endpoints import Endpoint


def ep(name: str, port: int = 8000) -> Endpoint:
    return Endpoint(name=name, url=f"http://127.0.0.1:{port}", serving="s", group_index=0)


async def test_endpoints_start_at_random_offsets_within_the_first_period() -> None:
    names = [f"e{i}" for i in range(6)]
    seed = 40  # offsets at least 25 ms apart
    draw = random.Random(seed)
    offsets = {n: draw.uniform(0.0, 0.3) for n in names}  # tasks draw in the order they start
    assert min(abs(a - b) for a in offsets.values() for b in offsets.values() if a != b) > 0.02
    first: list[str] = []

    async def probe(endpoint: Endpoint) -> None:
        if endpoint.name not in first:
            first.append(endpoint.name)

    poller = Poller(probe, interval_s=0.3, max_concurrency=8, rng=random.Random(seed))
    poller.update([ep(n) for n in names])
    try:
        async with asyncio.timeout(5):
            while len(first) < len(names):
                await asyncio.sleep(0.01)
    finally:
        await poller.close()
    assert first == sorted(names, key=offsets.__getitem__)


async def test_a_failing_probe_does_not_stop_its_loop(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def probe(endpoint: Endpoint) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    poller = Poller(probe, interval_s=0.01, max_concurrency=1)
    poller.update([ep("a")])
    try:
        async with asyncio.timeout(5):
            while calls < 3:
                await asyncio.sleep(0.01)
    finally:
        await poller.close()
    assert "probing a at http://127.0.0.1:8000 failed unexpectedly" in caplog.text


async def test_update_restarts_on_a_new_url_and_close_awaits_every_task() -> None:
    seen: list[str] = []

    async def probe(endpoint: Endpoint) -> None:
        seen.append(endpoint.url)
        await asyncio.sleep(10)  # still out when the set changes

    poller = Poller(probe, interval_s=0.01, max_concurrency=4)
    poller.update([ep("a", 1), ep("b", 2)])
    async with asyncio.timeout(5):
        while len(seen) < 2:
            await asyncio.sleep(0.01)
    assert poller.polling(ep("a", 1)) and poller.polling(ep("b", 2))
    poller.update([ep("a", 3)])
    assert poller.polling(ep("a", 3)) and not poller.polling(ep("a", 1)) and not poller.polling(ep("b", 2))
    async with asyncio.timeout(5):
        while "http://127.0.0.1:3" not in seen:
            await asyncio.sleep(0.01)
    await poller.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("poll ")]
    poller.update([ep("c")])
    assert not poller.polling(ep("c"))


def test_bad_settings_are_refused() -> None:
    async def probe(endpoint: Endpoint) -> None:
        return None

    with pytest.raises(ValueError):
        Poller(probe, interval_s=0, max_concurrency=1)
    with pytest.raises(ValueError):
        Poller(probe, interval_s=1, max_concurrency=0)
