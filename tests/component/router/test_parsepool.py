"""Body-parsing worker processes: started on demand, reused, replaced when one dies, stopped."""

from __future__ import annotations

import asyncio
import json

import pytest

from phalanx.router.messages import RequestError
from phalanx.router.parsepool import Parser
from phalanx.router.parsing import Question, Summary

pytestmark = pytest.mark.component

ASK = Question({}, "x-session-id", 1000, want_tokens=False)
BODY = json.dumps({"model": "m", "prompt": "p" * 1000}).encode()


async def test_small_bodies_stay_in_process_and_large_ones_go_to_one_reused_worker() -> None:
    parser = Parser(in_process_max=len(BODY), processes=1, memory_bytes=None)
    try:
        assert isinstance(await parser.summarize(BODY, ASK), Summary)
        assert parser.started == 0
        large = json.dumps({"model": "m", "prompt": "p" * 10_000}).encode()
        answers = await asyncio.gather(*(parser.summarize(large, ASK) for _ in range(3)))
        assert [a.model for a in answers if isinstance(a, Summary)] == ["m"] * 3
        assert parser.started == 1
    finally:
        await parser.close()


async def test_a_dead_worker_costs_one_503_and_is_replaced() -> None:
    parser = Parser(in_process_max=0, processes=1, memory_bytes=None)
    try:
        assert isinstance(await parser.summarize(BODY, ASK), Summary)
        (worker,) = parser._idle
        worker.process.kill()
        await worker.process.wait()
        answer = await parser.summarize(BODY, ASK)
        assert isinstance(answer, RequestError) and answer.status == 503
        assert isinstance(await parser.summarize(BODY, ASK), Summary)
        assert parser.started == 2
    finally:
        await parser.close()


async def test_a_caller_that_leaves_does_not_cost_the_worker() -> None:
    parser = Parser(in_process_max=0, processes=1, memory_bytes=None)
    try:
        waiting = asyncio.create_task(parser.summarize(BODY, ASK))
        await asyncio.sleep(0)
        waiting.cancel()  # its client went away while the worker starts and answers
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert isinstance(await parser.summarize(BODY, ASK), Summary)
        assert parser.started == 1
    finally:
        await parser.close()
    assert not parser._idle


async def test_close_stops_every_worker() -> None:
    parser = Parser(in_process_max=0, processes=2, memory_bytes=None)
    await asyncio.gather(parser.summarize(BODY, ASK), parser.summarize(BODY, ASK))
    processes = [w.process for w in parser._idle]
    await parser.close()
    assert processes and all(p.returncode is not None for p in processes)
    answer = await parser.summarize(BODY, ASK)
    assert isinstance(answer, RequestError) and answer.status == 503
