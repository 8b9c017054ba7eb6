"""The engine loop: the asyncio shell around the pure scheduler.

One task runs steps (admit, sleep for the step's simulated compute time, emit one token per
running sequence) and hands each request's tokens to its `RequestHandle`. In a multi-node group
every step also waits for every worker's acknowledgement, through `barrier`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from phalanx.sim.metrics import SimMetrics
from phalanx.sim.protocol import GenerationRequest
from phalanx.sim.scheduler import Scheduler, Sequence, TokenOutput
from phalanx.sim.textgen import StopMatcher, TokenSource, derive_seed

log = logging.getLogger("phalanx.sim")


class ClusterFailure(Exception):
    """A rank of the group died or stopped answering; the engine cannot go on."""


@dataclass(frozen=True)
class EngineFailure:
    status: int
    message: str


Event = TokenOutput | EngineFailure


class RequestHandle:
    def __init__(self, request_id: str, sequences: list[Sequence]) -> None:
        self.request_id = request_id
        self.sequences = sequences
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._unfinished = len(sequences)

    def put(self, event: Event) -> None:
        self._queue.put_nowait(event)

    async def events(self) -> AsyncIterator[Event]:
        """Tokens until every sequence finished, or one failure."""
        while self._unfinished:
            event = await self._queue.get()
            yield event
            if isinstance(event, EngineFailure):
                return
            if event.finish_reason is not None:
                self._unfinished -= 1

    def cached_tokens(self, n: int) -> int:
        """Prefix-cache hits of each prompt's first choice (what the prompt itself saved)."""
        return sum(seq.cached_tokens or 0 for seq in self.sequences[::n])


class Engine:
    def __init__(
        self,
        scheduler: Scheduler,
        metrics: SimMetrics,
        *,
        seed: int,
        barrier: Callable[[], Awaitable[None]] | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self._seed = seed
        self._barrier = barrier
        self._on_fatal = on_fatal
        self._handles: dict[str, RequestHandle] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failure: str | None = None

    @property
    def in_flight(self) -> int:
        return len(self._handles)

    def _clock(self) -> float:
        return asyncio.get_running_loop().time()

    def submit(self, request: GenerationRequest, request_id: str) -> RequestHandle:
        if self.failure is not None:
            raise ClusterFailure(self.failure)
        now = self._clock()
        sequences: list[Sequence] = []
        for p, prompt in enumerate(request.prompts):
            for i in range(request.n):
                # Same (engine seed, prompt, request seed, choice) -> same text, on every run.
                seed = derive_seed(self._seed, prompt, request.seed, i)
                sequences.append(
                    Sequence(
                        seq_id=f"{request_id}-{p * request.n + i}",
                        request_id=request_id,
                        choice=p * request.n + i,
                        prompt=list(prompt),
                        max_tokens=request.max_tokens,
                        source=TokenSource(seed),
                        stop=StopMatcher(request.stop),
                        arrival=now,
                    )
                )
        handle = RequestHandle(request_id, sequences)
        self._handles[request_id] = handle
        self._idle.clear()
        for seq in sequences:
            self.scheduler.add(seq)
            self.metrics.observe_new_request(len(seq.prompt))
        self.metrics.update_gauges(self.scheduler)
        self._wake.set()
        return handle

    def release(self, handle: RequestHandle) -> None:
        """The handler is done with the request: drop whatever is still live (client gone)."""
        for seq in handle.sequences:
            if self.scheduler.abort(seq.seq_id):
                self.metrics.observe_abort()
        self._forget(handle.request_id)
        self.metrics.update_gauges(self.scheduler)

    def fail_all(self, status: int, message: str) -> None:
        for handle in list(self._handles.values()):
            handle.put(EngineFailure(status, message))
            for seq in handle.sequences:
                self.scheduler.abort(seq.seq_id)
            self._forget(handle.request_id)
        self.metrics.update_gauges(self.scheduler)

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _forget(self, request_id: str) -> None:
        self._handles.pop(request_id, None)
        if not self._handles:
            self._idle.set()

    def fail(self, reason: str) -> None:
        """A rank died: fail everything in flight and refuse new work for good (as vLLM's
        EngineDeadError)."""
        if self.failure is not None:
            return
        self.failure = reason
        self.fail_all(503, f"The engine failed: {reason}")
        self._wake.set()
        if self._on_fatal is not None:
            self._on_fatal(reason)

    async def run(self) -> None:
        scheduler = self.scheduler
        while self.failure is None:
            if not scheduler.has_work:
                self._wake.clear()
                await self._wake.wait()
                continue
            plan = scheduler.schedule(self._clock())
            self.metrics.observe_schedule(plan)
            if not plan.work:
                await asyncio.sleep(0.001)  # nothing fits yet; never spin
                continue
            if self._barrier is not None:
                try:
                    await self._barrier()
                except ClusterFailure as exc:
                    self.fail(str(exc))
                    return
            await asyncio.sleep(max(0.0, plan.started + plan.duration - self._clock()))
            result = scheduler.complete_step(plan, self._clock())
            self.metrics.observe_result(result)
            self.metrics.update_gauges(scheduler)
            for output in result.outputs:
                handle = self._handles.get(output.request_id)
                if handle is not None:
                    handle.put(output)
