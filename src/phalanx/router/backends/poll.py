"""One background task per endpoint that calls a probe on a fixed period: the shared shell of the
load scraper and the health checker.

Endpoints start at a random offset within the first period so that a router started (or given a
new set) at one instant does not hit every backend in the same millisecond, and a semaphore bounds
how many probes run at once, so a large fleet cannot open hundreds of connections together.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable

from phalanx.router.endpoints import Endpoint

logger = logging.getLogger("phalanx.router.backends")

Probe = Callable[[Endpoint], Awaitable[None]]


class Poller:
    """Calls `probe(endpoint)` every `interval_s` for each endpoint given to `update`.

    A task is keyed by endpoint name; a new URL under the same name restarts it. The probe should
    handle its own errors; one that escapes is logged and the loop goes on. Every task belongs to
    this object: `update` cancels the tasks of endpoints that left, `close` cancels and awaits all.
    """

    def __init__(
        self,
        probe: Probe,
        *,
        interval_s: float,
        max_concurrency: int,
        rng: random.Random | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._probe = probe
        self._interval_s = interval_s
        self._rng = rng or random.Random()
        self._limit = asyncio.Semaphore(max_concurrency)
        self._tasks: dict[str, tuple[str, asyncio.Task[None]]] = {}
        # Cancelled but maybe not finished yet: `close` still awaits them.
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    def polling(self, ep: Endpoint) -> bool:
        """Whether this endpoint, at this URL, is still in the set (a probe that was out may not be)."""
        task = self._tasks.get(ep.name)
        return task is not None and task[0] == ep.url

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Poll exactly these endpoints from now on. Needs a running event loop; no-op once closed."""
        if self._closed:
            return
        wanted = {ep.name: ep for ep in endpoints}
        for name, (url, task) in list(self._tasks.items()):
            ep = wanted.get(name)
            if ep is None or ep.url != url:
                del self._tasks[name]
                self._stop(task)
        loop = asyncio.get_running_loop()
        for name, ep in wanted.items():
            if name not in self._tasks:
                task = loop.create_task(self._run(ep), name=f"poll {name}")
                self._tasks[name] = (ep.url, task)

    async def close(self) -> None:
        self._closed = True
        for _, task in self._tasks.values():
            self._stop(task)
        self._tasks.clear()
        pending = list(self._stopping)
        await asyncio.gather(*pending, return_exceptions=True)

    def _stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _run(self, ep: Endpoint) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self._rng.uniform(0.0, self._interval_s))
        next_at = loop.time()
        while True:
            async with self._limit:
                try:
                    await self._probe(ep)
                except Exception:
                    logger.exception("probing %s at %s failed unexpectedly", ep.name, ep.url)
            # A fixed rate, not a fixed pause: a slow probe does not stretch the period, and
            # periods it overran are skipped rather than run back to back.
            next_at += self._interval_s
            now = loop.time()
            next_at = max(next_at, now)
            await asyncio.sleep(next_at - now)
