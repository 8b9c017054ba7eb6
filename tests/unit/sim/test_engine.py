from __future__ import annotations

import asyncio
import contextlib

import pytest

from phalanx.sim.blocks import BlockManager
from phalanx.sim.engine import ClusterFailure, Engine, EngineFailure
from phalanx.sim.metrics import SimMetrics
from phalanx.sim.protocol import Limits, parse_request
from phalanx.sim.scheduler import LatencyModel, Scheduler, TokenOutput

LIMITS = Limits(served_model_names=("m",), max_model_len=128, default_max_tokens=8)


def engine(barrier: object = None) -> Engine:
    scheduler = Scheduler(
        BlockManager(64, 4),
        LatencyModel(0.0, 0.0, 0.0, 0.0),
        max_num_seqs=4,
        max_num_batched_tokens=512,
        max_model_len=128,
    )
    metrics = SimMetrics("m", max_model_len=128, block_size=4, num_gpu_blocks=64)
    return Engine(scheduler, metrics, seed=0, barrier=barrier)  # type: ignore[arg-type]


async def collect(eng: Engine, body: dict[str, object], request_id: str) -> list[TokenOutput | EngineFailure]:
    handle = eng.submit(parse_request(body, chat=False, limits=LIMITS), request_id)
    try:
        return [event async for event in handle.events()]
    finally:
        eng.release(handle)


async def test_requests_run_to_completion_and_are_deterministic() -> None:
    eng = engine()
    loop_task = asyncio.create_task(eng.run())
    try:
        body = {"prompt": "one two three", "max_tokens": 5, "n": 2}
        first, second = await asyncio.gather(collect(eng, body, "a"), collect(eng, body, "b"))
        texts = [
            [(e.choice, e.text) for e in events if isinstance(e, TokenOutput)] for events in (first, second)
        ]
        assert texts[0] == texts[1]
        assert len(texts[0]) == 10
        assert eng.in_flight == 0
        assert eng.scheduler.blocks.usage == 0.0
        assert b'vllm:generation_tokens_total{engine="0",model_name="m"} 20.0' in eng.metrics.render()
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task


async def test_release_aborts_unfinished_sequences() -> None:
    eng = engine()
    loop_task = asyncio.create_task(eng.run())
    try:
        handle = eng.submit(parse_request({"prompt": "x", "max_tokens": 100}, chat=False, limits=LIMITS), "a")
        async for _ in handle.events():
            break
        eng.release(handle)
        assert not eng.scheduler.has_work
        assert b'finished_reason="abort"' in eng.metrics.render()
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task


async def test_a_failed_barrier_fails_requests_and_the_engine() -> None:
    async def broken() -> None:
        raise ClusterFailure("worker 1 disconnected")

    eng = engine(broken)
    loop_task = asyncio.create_task(eng.run())
    events = await collect(eng, {"prompt": "x", "max_tokens": 3}, "a")
    assert isinstance(events[-1], EngineFailure) and events[-1].status == 503
    await asyncio.wait_for(loop_task, 1)
    assert eng.failure == "worker 1 disconnected"
    with pytest.raises(ClusterFailure):
        eng.submit(parse_request({"prompt": "x"}, chat=False, limits=LIMITS), "b")
