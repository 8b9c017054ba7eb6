"""The entry's join protocol in-process, against hand-written workers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from phalanx.sim.cluster import EntryCluster, run_worker
from phalanx.sim.engine import ClusterFailure

pytestmark = pytest.mark.component


class FakeWorker:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ack: bool) -> None:
        self.reader = reader
        self.writer = writer
        self._task = asyncio.create_task(self._answer(ack))

    @classmethod
    async def join(cls, port: int, index: int, *, ack: bool = True) -> FakeWorker:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(json.dumps({"t": "hello", "worker": index}).encode() + b"\n")
        assert json.loads(await reader.readline())["t"] == "welcome"
        return cls(reader, writer, ack)

    async def _answer(self, ack: bool) -> None:
        while line := await self.reader.readline():
            message = json.loads(line)
            if ack and message["t"] in ("step", "hb"):
                self.writer.write(json.dumps({"t": "ack", "n": message["n"]}).encode() + b"\n")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._task
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def say_hello(port: int, index: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(json.dumps({"t": "hello", "worker": index}).encode() + b"\n")
        kind: str = json.loads(await reader.readline())["t"]
        return kind
    finally:
        writer.close()
        await writer.wait_closed()


async def test_hung_worker_is_noticed_within_about_a_second() -> None:
    failures: list[str] = []
    cluster = EntryCluster("127.0.0.1", 0, 2, failures.append, ack_timeout=0.5, heartbeat_interval=0.1)
    await cluster.start()
    worker = await FakeWorker.join(cluster.bound_port, 1, ack=False)
    try:
        await asyncio.wait_for(cluster.complete.wait(), 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not failures:
            await asyncio.sleep(0.02)
            assert loop.time() - started < 2
        assert "did not acknowledge" in failures[0]
        with pytest.raises(ClusterFailure):
            await cluster.barrier()
    finally:
        await worker.close()
        await cluster.close()


async def test_duplicate_and_out_of_range_workers_are_rejected() -> None:
    cluster = EntryCluster("127.0.0.1", 0, 3, lambda _: None)
    await cluster.start()
    workers = [await FakeWorker.join(cluster.bound_port, 1)]
    try:
        for index in (1, 3, 0):
            assert await say_hello(cluster.bound_port, index) == "reject"
        assert not cluster.complete.is_set()
        workers.append(await FakeWorker.join(cluster.bound_port, 2))
        await asyncio.wait_for(cluster.complete.wait(), 2)
        await asyncio.wait_for(cluster.barrier(), 2)
    finally:
        for worker in workers:
            await worker.close()
        await cluster.close()


async def test_worker_leaving_before_the_group_formed_may_rejoin() -> None:
    failures: list[str] = []
    cluster = EntryCluster("127.0.0.1", 0, 3, failures.append)
    await cluster.start()
    workers: list[FakeWorker] = []
    try:
        await (await FakeWorker.join(cluster.bound_port, 1)).close()
        await asyncio.sleep(0.1)
        workers.append(await FakeWorker.join(cluster.bound_port, 1))
        workers.append(await FakeWorker.join(cluster.bound_port, 2))
        await asyncio.wait_for(cluster.complete.wait(), 2)
        assert failures == []
    finally:
        for worker in workers:
            await worker.close()
        await cluster.close()


async def test_real_worker_acks_steps_and_leaves_on_bye() -> None:
    cluster = EntryCluster("127.0.0.1", 0, 2, lambda _: None)
    await cluster.start()
    stopping = asyncio.Event()
    worker = asyncio.create_task(
        run_worker("127.0.0.1", cluster.bound_port, 1, join_timeout=2, drain_timeout=2, stopping=stopping)
    )
    try:
        await asyncio.wait_for(cluster.complete.wait(), 2)
        for _ in range(20):
            await asyncio.wait_for(cluster.barrier(), 1)
        await cluster.close()
        assert await asyncio.wait_for(worker, 2) == 0
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await cluster.close()
