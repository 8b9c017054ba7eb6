"""Active health checks: `GET {url}{health_path}` of every ready endpoint on a period, fed to the
detector. The path is the endpoint's (its pod's readiness probe: `/health` for vLLM and the
simulator, `/ready` for SGLang) unless the checker is given one.

vLLM answers 200 while it can serve and 503 once its engine is dead; `phalanx sim` also answers
503 while starting, draining, or waiting for its workers. Anything but a 2xx within the timeout is
a failed check.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable

import aiohttp

from phalanx.router.backends.outlier import OutlierDetector
from phalanx.router.backends.poll import Poller
from phalanx.router.endpoints import Endpoint

logger = logging.getLogger("phalanx.router.backends")


class HealthChecker:
    """Checks every ready endpoint every `interval_s` and reports each result to `detector`.

    `update` takes the whole endpoint set (models resolved), gives it to the detector, and checks
    the ready ones. The detector holds the verdicts: `ejected(now)` is its answer, and its
    `on_event` callback carries ejections and recoveries. Nothing here raises into the caller.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        detector: OutlierDetector,
        *,
        interval_s: float = 5.0,
        timeout_s: float = 2.0,
        path: str | None = None,
        max_concurrency: int = 32,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._session = session
        self.detector = detector
        self.timeout_s = timeout_s
        self.path = path
        self._clock = clock
        self._poller = Poller(self._check, interval_s=interval_s, max_concurrency=max_concurrency, rng=rng)
        self.checks = 0
        self.failures = 0

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        endpoints = tuple(endpoints)
        self.detector.set_endpoints(endpoints)
        self._poller.update(ep for ep in endpoints if ep.ready)

    def ejected(self, now: float) -> frozenset[str]:
        return self.detector.ejected(now)

    async def close(self) -> None:
        await self._poller.close()

    async def check(self, ep: Endpoint) -> str | None:
        """One check; None when healthy, else why not."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            path = self.path if self.path is not None else ep.health_path
            async with self._session.get(ep.url + path, timeout=timeout) as resp:
                await resp.read()
                return None if 200 <= resp.status < 300 else f"http_{resp.status}"
        except TimeoutError:
            return "timeout"
        except (aiohttp.ClientError, OSError) as exc:
            return type(exc).__name__

    async def _check(self, ep: Endpoint) -> None:
        problem = await self.check(ep)
        # A check that was out while the endpoint left the set, or changed URL, reports nothing.
        if not self._poller.polling(ep):
            return
        self.checks += 1
        if problem is not None:
            self.failures += 1
            logger.debug("health check of %s at %s%s failed: %s", ep.name, ep.url, self.path, problem)
        self.detector.record_check(ep.name, problem is None, self._clock())
