"""`HealthChecker` and `OutlierDetector` against real `phalanx sim` processes that die, restart and
start slowly, and against in-process backends for timeouts and removals."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from phalanx.router.backends import (
    EventKind,
    FailureKind,
    HealthChecker,
    HealthEvent,
    OutlierConfig,
    OutlierDetector,
)
from phalanx.router.backends.outlier import Passive
from phalanx.router.endpoints import Endpoint
from tests.component.sim.conftest import SimProcess, start_sim, wait_health

from .fakes import eventually
from .test_backends_load import Make, backends, endpoint, session

__all__ = ["backends", "session", "start_sim"]  # fixtures, used by name

pytestmark = pytest.mark.component

FAST = OutlierConfig(
    consecutive_failures=2,
    base_ejection_s=0.3,
    max_ejection_s=1.0,
    unhealthy_checks=2,
    healthy_checks=2,
    max_ejection_percent=50.0,
)


@asynccontextmanager
async def checking(
    session: aiohttp.ClientSession, config: OutlierConfig = FAST, timeout_s: float = 0.5
) -> AsyncIterator[tuple[HealthChecker, list[HealthEvent]]]:
    events: list[HealthEvent] = []
    detector = OutlierDetector(config, on_event=events.append)
    checker = HealthChecker(session, detector, interval_s=0.05, timeout_s=timeout_s)
    try:
        yield checker, events
    finally:
        await checker.close()


@pytest.fixture
def two_sims(start_sim: Callable[..., SimProcess]) -> tuple[SimProcess, SimProcess]:
    sims = (start_sim(), start_sim())
    for sim in sims:
        wait_health(sim.port, 200)
    return sims


def ejected(checker: HealthChecker) -> frozenset[str]:
    return checker.ejected(time.monotonic())


def seen(events: list[HealthEvent], name: str) -> list[tuple[str, str]]:
    return [(e.kind.value, e.source) for e in events if e.endpoint == name]


async def test_a_killed_simulator_is_ejected_and_a_restarted_one_recovers(
    start_sim: Callable[..., SimProcess],
    two_sims: tuple[SimProcess, SimProcess],
    session: aiohttp.ClientSession,
) -> None:
    a, b = two_sims
    async with checking(session) as (checker, events):
        checker.update([endpoint("a", a.base_url), endpoint("b", b.base_url)])
        await eventually(lambda: checker.checks >= 6)
        assert ejected(checker) == frozenset() and events == []

        a.proc.kill()
        a.proc.wait(timeout=10)
        await eventually(lambda: ejected(checker) == {"a"})
        assert seen(events, "a") == [("ejected", "active")]

        again = start_sim(port=a.port, join_port=a.join_port)
        wait_health(again.port, 200)
        await eventually(lambda: ejected(checker) == frozenset(), timeout_s=5)
        assert seen(events, "a") == [("ejected", "active"), ("recovered", "active")]
        assert seen(events, "b") == []


async def test_a_starting_simulator_is_down_until_its_health_turns_200(
    start_sim: Callable[..., SimProcess], session: aiohttp.ClientSession
) -> None:
    b = start_sim()
    slow = start_sim("--startup-delay", "2")
    wait_health(b.port, 200)
    wait_health(slow.port, 503)  # listening, loading weights
    async with checking(session) as (checker, events):
        checker.update([endpoint("slow", slow.base_url), endpoint("b", b.base_url)])
        await eventually(lambda: ejected(checker) == {"slow"})
        await eventually(lambda: ejected(checker) == frozenset(), timeout_s=5)
        assert seen(events, "slow") == [("ejected", "active"), ("recovered", "active")]


async def test_the_last_simulator_of_a_model_stays_in_even_when_down(
    start_sim: Callable[..., SimProcess], session: aiohttp.ClientSession
) -> None:
    a = start_sim()
    wait_health(a.port, 200)
    async with checking(session) as (checker, events):
        checker.update([endpoint("a", a.base_url)])
        a.proc.kill()
        a.proc.wait(timeout=10)
        # The checks see it down, but skipping it would leave the model with nothing.
        await eventually(lambda: seen(events, "a") == [("ejected", "active")])
        assert ejected(checker) == frozenset()


async def test_passive_ejection_ends_with_a_successful_check(
    two_sims: tuple[SimProcess, SimProcess], session: aiohttp.ClientSession
) -> None:
    a, b = two_sims
    async with checking(session) as (checker, events):
        checker.update([endpoint("a", a.base_url), endpoint("b", b.base_url)])
        detector = checker.detector
        # The proxy saw two 5xx in a row from a, for two clients (say, a bad batch): ejected for 0.3 s.
        for client in ("alice", "bob"):
            detector.record_failure("a", FailureKind.HTTP_5XX, time.monotonic(), client)
        assert ejected(checker) == {"a"}
        # The ejection ends (a is probing: it may take one request) and the next check, which a
        # passes, brings it back.
        await eventually(lambda: len(events) == 2, timeout_s=3)
        assert ejected(checker) == frozenset()
        state = detector.state("a", time.monotonic())
        assert state is not None and state.passive is Passive.HEALTHY
        assert [(e.kind, e.source, e.reason) for e in events] == [
            (EventKind.EJECTED, "passive", "5xx"),
            (EventKind.RECOVERED, "passive", "health_check"),
        ]


async def test_a_check_that_times_out_is_a_failure(backends: Make, session: aiohttp.ClientSession) -> None:
    slow, ok = await backends(health_delay_s=1.0), await backends()
    async with checking(session, timeout_s=0.1) as (checker, events):
        checker.update([endpoint("slow", slow.url), endpoint("ok", ok.url)])
        await eventually(lambda: ejected(checker) == {"slow"})
        assert checker.failures >= 2 and seen(events, "ok") == []


async def test_non_2xx_answers_are_failures(backends: Make, session: aiohttp.ClientSession) -> None:
    broken, ok = await backends(health_status=404), await backends()
    async with checking(session) as (checker, _):
        checker.update([endpoint("broken", broken.url), endpoint("ok", ok.url)])
        await eventually(lambda: ejected(checker) == {"broken"})


async def test_each_endpoint_is_asked_on_its_own_health_path(
    backends: Make, session: aiohttp.ClientSession
) -> None:
    # The backend answers 404 on every path but /health: an endpoint that asks /ready fails.
    on_health, on_ready = await backends(), await backends()
    async with checking(session) as (checker, _):
        checker.update(
            [
                endpoint("health", on_health.url),
                Endpoint(name="ready", url=on_ready.url, serving="s", group_index=0, health_path="/ready"),
            ]
        )
        await eventually(lambda: ejected(checker) == {"ready"})
        assert on_ready.health_checks == 0 and on_health.health_checks > 0


async def test_only_ready_endpoints_are_checked_and_removed_ones_forgotten(
    backends: Make, session: aiohttp.ClientSession
) -> None:
    a, b, c = [await backends() for _ in range(3)]
    async with checking(session) as (checker, _):
        checker.update([endpoint("a", a.url), endpoint("b", b.url), endpoint("c", c.url, ready=False)])
        await eventually(lambda: a.health_checks >= 2 and b.health_checks >= 2)
        assert c.health_checks == 0
        b.health_status = 503
        await eventually(lambda: ejected(checker) == {"b"})
        checker.update([endpoint("a", a.url), endpoint("c", c.url)])
        assert ejected(checker) == frozenset()
        assert checker.detector.state("b", time.monotonic()) is None
        checked = b.health_checks
        await eventually(lambda: c.health_checks >= 2)
        assert b.health_checks <= checked + 1  # at most the one already out
