"""A work queue of object keys with client-go's guarantees, for level-triggered controllers.

- Deduplication: a key added many times before a worker takes it is processed once.
- Per-key serialisation: a key is never processed by two workers at once; one added while it is
  being processed is processed again afterwards (the change it signals is not lost).
- Delayed and rate-limited requeue: `add_after` for timers (grace periods, drains), and
  `add_rate_limited` for failures, with per-key exponential backoff that `forget` resets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class ShutDownError(Exception):
    """The queue was shut down; workers should return."""


@dataclass
class ExponentialBackoff(Generic[K]):
    """Per-key failure backoff: base, 2*base, 4*base ... up to cap (client-go's item limiter)."""

    base: float = 0.005
    cap: float = 300.0
    failures: dict[K, int] = field(default_factory=dict)

    def when(self, key: K) -> float:
        count = self.failures.get(key, 0)
        self.failures[key] = count + 1
        return float(min(self.base * 2**count, self.cap))

    def forget(self, key: K) -> None:
        self.failures.pop(key, None)

    def retries(self, key: K) -> int:
        return self.failures.get(key, 0)


class WorkQueue(Generic[K]):
    def __init__(self, backoff: ExponentialBackoff[K] | None = None) -> None:
        self.backoff: ExponentialBackoff[K] = backoff or ExponentialBackoff()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # waiting to be processed (in the queue, or after processing)
        self._processing: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._due: dict[K, float] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shut_down = False

    def __len__(self) -> int:
        """Keys waiting for a worker (the queue depth metric)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shut_down

    def add(self, key: K) -> None:
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # `done` puts it back: one worker per key at a time
        self._queue.append(key)
        self._notify()

    def add_after(self, key: K, delay: float) -> None:
        """Adds the key after `delay` seconds; an earlier pending time for the same key wins."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if key in self._due and self._due[key] <= due:
            return
        if key in self._timers:
            self._timers[key].cancel()
        self._due[key] = due
        self._timers[key] = loop.call_at(due, self._fire, key)

    def add_rate_limited(self, key: K) -> None:
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: K) -> None:
        """The key succeeded: its failure backoff starts from the beginning next time."""
        self.backoff.forget(key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self._due.pop(key, None)
        self.add(key)

    def _notify(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def get(self) -> K:
        """The next key to process; the caller must call `done(key)` when finished with it."""
        while not self._queue:
            if self._shut_down:
                raise ShutDownError
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                if waiter.done() and not waiter.cancelled():
                    self._notify()  # pass the wake-up on to another worker
                raise
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._queue.append(key)
            self._notify()

    def shut_down(self) -> None:
        self._shut_down = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._due.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


async def run_workers(
    queue: WorkQueue[K],
    handle: Callable[[K], Awaitable[float | None]],
    *,
    workers: int = 2,
    on_error: Callable[[K, BaseException], None] | None = None,
) -> None:
    """Runs `workers` loops until the queue shuts down. `handle` returns seconds until the key should
    be looked at again (or None); an exception requeues the key with backoff."""

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDownError:
                return
            try:
                again = await handle(key)
            except asyncio.CancelledError:
                queue.done(key)
                raise
            except Exception as exc:
                if on_error is not None:
                    on_error(key, exc)
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
                if again is not None:
                    queue.add_after(key, again)
            queue.done(key)

    await asyncio.gather(*(worker() for _ in range(workers)))
