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

from phalanx.sim.leases import Lease, LeaseTable
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
        self.leased_blocks: list[int] | None = None  # the KV kept for a remote decode, once finished
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
        lease_seconds: float = 30.0,
        drop_leases: bool = False,
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
        self.leases = LeaseTable()
        self._lease_seconds = lease_seconds
        self._drop_leases = drop_leases  # fault injection: a lease is gone as soon as it is made
        self._lease_timers: dict[str, asyncio.TimerHandle] = {}
        self._lease_gone: dict[str, asyncio.Event] = {}

    @property
    def in_flight(self) -> int:
        return len(self._handles)

    def _clock(self) -> float:
        return asyncio.get_running_loop().time()

    def submit(
        self,
        request: GenerationRequest,
        request_id: str,
        *,
        hold_kv: str | None = None,
        remote_kv: bool = False,
        arrival: float | None = None,
    ) -> RequestHandle:
        """`arrival`: when the request came in, if before now (a decode request that waited for
        its KV counts that wait in its TTFT and queue time, as in vLLM)."""
        if self.failure is not None:
            raise ClusterFailure(self.failure)
        now = self._clock() if arrival is None else arrival
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
                        hold_kv=hold_kv,
                        remote_kv=remote_kv,
                    )
                )
        handle = RequestHandle(request_id, sequences)
        self._handles[request_id] = handle
        self._idle.clear()
        for seq in sequences:
            self.scheduler.add(seq)
            self.metrics.observe_new_request(len(seq.prompt))
        self._update_gauges()
        self._wake.set()
        return handle

    def release(self, handle: RequestHandle) -> None:
        """The handler is done with the request: drop whatever is still live (client gone)."""
        for seq in handle.sequences:
            if self.scheduler.abort(seq.seq_id):
                self.metrics.observe_abort()
        self._forget(handle.request_id)
        self._update_gauges()

    # -- leases: KV kept for a remote decode ---------------------------------------------------

    def begin_pull(self, lease_id: str) -> Lease | str:
        """The decode side starts reading a lease: the lease, or why there is none."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return self.leases.why_missing(lease_id)
        lease.pulling = True
        return lease

    def end_pull(self, lease_id: str) -> bool:
        """The decode side read the blocks: free them. False when the lease expired meanwhile,
        so what was read is not the KV any more."""
        return self.release_lease(lease_id)

    def release_lease(self, lease_id: str) -> bool:
        lease = self.leases.pop(lease_id)
        if lease is None:
            return False
        self._free_lease(lease)
        return True

    async def wait_lease_gone(self, lease_id: str) -> None:
        event = self._lease_gone.get(lease_id)
        if event is not None:
            await event.wait()

    @property
    def leaked_blocks(self) -> int:
        """Blocks held by no live sequence and no live lease: must stay 0."""
        blocks = self.scheduler.blocks
        stray = blocks.owners - self.scheduler.live_ids - self.leases.owners
        return sum(len(blocks.block_table(owner)) for owner in stray)

    def _add_lease(self, request_id: str, owner: str, block_ids: list[int], tokens: int) -> None:
        now = self._clock()
        lease = Lease(request_id, owner, block_ids, tokens, now + self._lease_seconds)
        self.leases.add(lease)
        self._lease_gone[request_id] = asyncio.Event()
        if self._drop_leases:
            lease.expires = now
            self._expire(request_id)
            return
        loop = asyncio.get_running_loop()
        self._lease_timers[request_id] = loop.call_at(lease.expires, self._expire, request_id)

    def _expire(self, lease_id: str) -> None:
        lease = self.leases.expire(lease_id, self._clock())
        if lease is None:
            return
        log.warning(
            "KV lease %s expired before decode read it; freeing %d blocks", lease_id, len(lease.block_ids)
        )
        self.metrics.observe_expired_lease()
        self._free_lease(lease)

    def _free_lease(self, lease: Lease) -> None:
        timer = self._lease_timers.pop(lease.lease_id, None)
        if timer is not None:
            timer.cancel()
        self.scheduler.blocks.free(lease.owner)
        gone = self._lease_gone.pop(lease.lease_id, None)
        if gone is not None:
            gone.set()
        self._update_gauges()
        self._wake.set()  # freed blocks may admit a waiting request

    def _update_gauges(self) -> None:
        self.metrics.update_gauges(self.scheduler)
        self.metrics.update_kv(self.leases.num_blocks, self.leaked_blocks)

    def fail_all(self, status: int, message: str) -> None:
        for handle in list(self._handles.values()):
            handle.put(EngineFailure(status, message))
            for seq in handle.sequences:
                self.scheduler.abort(seq.seq_id)
            self._forget(handle.request_id)
        self._update_gauges()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _on_leased(self, request_id: str, leased: tuple[str, list[int]], tokens: int) -> None:
        handle = self._handles.get(request_id)
        owner, block_ids = leased
        if handle is None:
            self.scheduler.blocks.free(owner)  # nobody left to hand the KV to
            return
        handle.leased_blocks = block_ids
        self._add_lease(request_id, owner, block_ids, tokens)

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
            for done in result.finished:
                if done.leased is not None:
                    self._on_leased(done.request_id, done.leased, done.prompt_tokens)
            self._update_gauges()
            for output in result.outputs:
                handle = self._handles.get(output.request_id)
                if handle is not None:
                    handle.put(output)
