"""`Parser`: `parsing.summarize` on the event loop for small bodies, in worker processes for large.

A worker is `python -m phalanx.router.parseworker`, started with the first large body (a router
that never sees one never starts one), fed over its stdin and read from its stdout. Own processes
rather than `multiprocessing`: its spawn start method runs the embedding program's main script
again in every worker, and its fork is unsafe in a process with an event loop and threads.

A client that goes away does not cut an exchange short (the worker would be left mid-answer); the
exchange finishes and the worker goes back to the pool. A worker that dies (killed, out of memory
before Python could say so) is replaced, and its request answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

import phalanx
from phalanx.router.messages import RequestError
from phalanx.router.parsing import (
    ANSWER_HEAD,
    BODY_HEAD,
    QUESTION_HEAD,
    Question,
    Summary,
    from_wire,
    question_to_wire,
    summarize,
)

logger = logging.getLogger("phalanx.router")

# The directory holding the `phalanx` package this process runs, first on the worker's path.
_SOURCE = str(Path(phalanx.__file__).resolve().parent.parent)


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, question: bytes, body: bytes) -> bytes:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(QUESTION_HEAD.pack(len(question)) + question + BODY_HEAD.pack(len(body)))
        stdin.write(body)
        await stdin.drain()
        (size,) = ANSWER_HEAD.unpack(await stdout.readexactly(ANSWER_HEAD.size))
        return await stdout.readexactly(size)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Close its stdin (it exits at the end of its input), then kill it if it lingers."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


class Parser:
    """Summarizes bodies up to `in_process_max` bytes here, larger ones in up to `processes`
    workers (0: always here), each with its address space capped at `memory_bytes` (None: not)."""

    def __init__(self, in_process_max: int, processes: int, memory_bytes: int | None) -> None:
        if in_process_max < 0 or processes < 0:
            raise ValueError("in_process_max and processes must be 0 or more")
        self.in_process_max = in_process_max
        self.processes = processes
        self.memory_bytes = memory_bytes
        self._idle: list[_Worker] = []
        self._slots: asyncio.Semaphore | None = None
        self._exchanges: set[asyncio.Task[Summary | RequestError]] = set()
        self._closed = False
        self.started = 0  # workers started, for tests and logs

    async def summarize(self, body: bytes, question: Question) -> Summary | RequestError:
        if len(body) <= self.in_process_max or self.processes == 0:
            return summarize(body, question)
        if self._closed:
            return _unavailable()
        exchange = asyncio.get_running_loop().create_task(self._exchange(body, question))
        self._exchanges.add(exchange)
        exchange.add_done_callback(self._exchanges.discard)
        return await asyncio.shield(exchange)

    async def _exchange(self, body: bytes, question: Question) -> Summary | RequestError:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.processes)
        async with self._slots:
            worker: _Worker | None = None
            try:
                worker = self._idle.pop() if self._idle else await self._start()
                answer = await worker.ask(question_to_wire(question), body)
            except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
                logger.error(
                    "a body-parsing worker failed (%s); starting a new one next time", type(exc).__name__
                )
                if worker is not None:
                    await _kill(worker)
                return _unavailable()
            except asyncio.CancelledError:  # close(): the worker is mid-answer, so it goes
                if worker is not None:
                    await _kill(worker)
                raise
            if self._closed:
                await worker.stop()
            else:
                self._idle.append(worker)
            return from_wire(answer)

    async def _start(self) -> _Worker:
        limit = "none" if self.memory_bytes is None else str(self.memory_bytes)
        path = os.pathsep.join(p for p in (_SOURCE, os.environ.get("PYTHONPATH")) if p)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "phalanx.router.parseworker",
            limit,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )
        self.started += 1
        return _Worker(process)

    async def close(self) -> None:
        """Stop every worker; exchanges under way are cancelled."""
        self._closed = True
        exchanges = list(self._exchanges)
        for exchange in exchanges:
            exchange.cancel()
        await asyncio.gather(*exchanges, return_exceptions=True)
        idle, self._idle = self._idle, []
        await asyncio.gather(*(worker.stop() for worker in idle))


async def _kill(worker: _Worker) -> None:
    with contextlib.suppress(ProcessLookupError):
        worker.process.kill()
    if worker.process.stdin is not None:
        worker.process.stdin.close()
    await worker.process.wait()


def _unavailable() -> RequestError:
    return RequestError(
        503, "The router could not read the request body now; retry.", headers={"Retry-After": "1"}
    )
