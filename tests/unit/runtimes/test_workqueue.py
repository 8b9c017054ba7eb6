"""The controller work queue: dedup, one worker per key, delayed and rate-limited requeue."""

from __future__ import annotations

import asyncio

import pytest

from phalanx.runtimes.workqueue import ExponentialBackoff, ShutDownError, WorkQueue, run_workers


async def test_a_key_added_many_times_is_processed_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["a", "b"]
    assert len(queue) == 0


async def test_a_key_added_while_processing_waits_for_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")  # a change arrived while a worker holds the key
    assert len(queue) == 0  # not handed to a second worker
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"


async def test_get_waits_for_work_and_shut_down_releases_waiters() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("x")
    assert await asyncio.wait_for(waiting, 1) == "x"
    blocked = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shut_down()
    with pytest.raises(ShutDownError):
        await asyncio.wait_for(blocked, 1)
    queue.add("ignored")
    assert len(queue) == 0


async def test_add_after_keeps_the_earliest_time() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 30)
    queue.add_after("a", 0.01)
    queue.add_after("a", 60)
    assert await asyncio.wait_for(queue.get(), 1) == "a"


def test_backoff_doubles_per_key_and_forget_resets() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff(base=1, cap=5)
    assert [backoff.when("a") for _ in range(5)] == [1, 2, 4, 5, 5]
    assert backoff.when("b") == 1
    backoff.forget("a")
    assert backoff.when("a") == 1
    assert backoff.retries("b") == 1


async def test_workers_serialise_per_key_retry_failures_and_honour_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue(ExponentialBackoff(base=0.001))
    running: set[str] = set()
    seen: list[str] = []
    errors: list[str] = []
    failures = {"flaky": 2}
    requeued = {"timer": 1}

    async def handle(key: str) -> float | None:
        assert key not in running, "two workers on one key"
        running.add(key)
        try:
            seen.append(key)
            await asyncio.sleep(0.001)
            if failures.get(key, 0) > 0:
                failures[key] -= 1
                raise RuntimeError("boom")
            if requeued.get(key, 0) > 0:
                requeued[key] -= 1
                return 0.001
            return None
        finally:
            running.discard(key)

    workers = asyncio.create_task(
        run_workers(queue, handle, workers=3, on_error=lambda k, e: errors.append(k))
    )
    for key in ("flaky", "timer", "plain", "plain"):
        queue.add(key)
    for _ in range(200):
        if seen.count("flaky") == 3 and seen.count("timer") == 2:
            break
        await asyncio.sleep(0.005)
    queue.shut_down()
    await asyncio.wait_for(workers, 1)
    assert seen.count("flaky") == 3 and errors == ["flaky", "flaky"]
    assert seen.count("timer") == 2
    assert seen.count("plain") == 1
    assert queue.backoff.retries("flaky") == 0  # success forgot the failures
