"""The operator's in-flight reads: their settings (`phalanx operator --inflight-read-*`) and metrics."""

from __future__ import annotations

import math
from typing import Any, cast

import aiohttp
import pytest
import typer
from aiohttp.test_utils import TestClient, TestServer
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner
from yarl import URL

from phalanx.cli import app
from phalanx.operator.inflight import (
    BAD_PAGE,
    ERROR,
    NO_ADDRESS,
    OK,
    OUTCOMES,
    POD_UNREADABLE,
    REFUSED,
    TIMEOUT,
    EngineInFlight,
    ReadMetrics,
    ReadSettings,
    read_outcome,
    read_settings_problems,
)
from phalanx.operator.manager import Operator, OperatorOptions
from tests.unit.operator.test_inflight import Clock, Engine, entry_pod, pods_at, serving

# -- the outcome of one read (pure) ----------------------------------------------------------------


def connector_error() -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("10.0.0.1", 8000, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


def response_error(status: int) -> aiohttp.ClientResponseError:
    url = URL("http://10.0.0.1:8000/metrics")
    info = aiohttp.RequestInfo(url, "GET", cast(Any, {}), url)  # no headers to show
    return aiohttp.ClientResponseError(info, (), status=status)


@pytest.mark.parametrize(
    ("error", "requests", "outcome"),
    [
        (None, 3, OK),
        (None, 0, OK),  # idle is a count, not a failure
        (None, None, BAD_PAGE),  # a page without the engine gauges
        (TimeoutError(), None, TIMEOUT),  # asyncio.wait_for's
        (aiohttp.ServerTimeoutError("read timed out"), None, TIMEOUT),  # aiohttp's own
        (connector_error(), None, REFUSED),
        (response_error(500), None, BAD_PAGE),
        (response_error(404), None, BAD_PAGE),
        (ValueError("/metrics page over 8388608 bytes"), None, BAD_PAGE),
        (aiohttp.ClientPayloadError("cut short"), None, ERROR),
        (aiohttp.ServerDisconnectedError(), None, ERROR),
        (ConnectionResetError(104, "reset"), None, ERROR),
        (RuntimeError("a defect"), None, ERROR),
    ],
)
def test_read_outcome(error: BaseException | None, requests: int | None, outcome: str) -> None:
    assert read_outcome(error, requests) == outcome


# -- settings --------------------------------------------------------------------------------------


def test_the_default_settings_are_the_documented_ones() -> None:
    settings = ReadSettings()
    assert (settings.interval_s, settings.timeout_s, settings.max_concurrency) == (0.5, 1.0, 32)
    assert settings.fresh_s == 2.0  # a count outlives one late read
    assert ReadSettings(interval_s=5.0, timeout_s=2.0).fresh_s == 7.5
    assert read_settings_problems(settings) == []


@pytest.mark.parametrize(
    ("settings", "problems"),
    [
        (ReadSettings(interval_s=60.0, timeout_s=30.0, max_concurrency=1024), []),  # the largest
        (ReadSettings(interval_s=0.001, timeout_s=0.001, max_concurrency=1), []),
        (
            ReadSettings(interval_s=0.0),
            ["--inflight-read-interval 0: give seconds above 0 and at most 60 (default 0.5)"],
        ),
        (
            ReadSettings(interval_s=-1.0),
            ["--inflight-read-interval -1: give seconds above 0 and at most 60 (default 0.5)"],
        ),
        (
            ReadSettings(interval_s=61.0),
            ["--inflight-read-interval 61: give seconds above 0 and at most 60 (default 0.5)"],
        ),
        (
            ReadSettings(timeout_s=math.nan),
            ["--inflight-read-timeout nan: give seconds above 0 and at most 30 (default 1)"],
        ),
        (
            ReadSettings(timeout_s=math.inf),
            ["--inflight-read-timeout inf: give seconds above 0 and at most 30 (default 1)"],
        ),
        (
            ReadSettings(max_concurrency=0),
            ["--inflight-read-concurrency 0: give a whole number from 1 to 1024 (default 32)"],
        ),
        (
            ReadSettings(max_concurrency=5000),
            ["--inflight-read-concurrency 5000: give a whole number from 1 to 1024 (default 32)"],
        ),
        (  # every problem at once, in the order of the options
            ReadSettings(interval_s=0.0, timeout_s=-2.0, max_concurrency=-1),
            [
                "--inflight-read-interval 0: give seconds above 0 and at most 60 (default 0.5)",
                "--inflight-read-timeout -2: give seconds above 0 and at most 30 (default 1)",
                "--inflight-read-concurrency -1: give a whole number from 1 to 1024 (default 32)",
            ],
        ),
    ],
)
def test_read_settings_problems(settings: ReadSettings, problems: list[str]) -> None:
    assert read_settings_problems(settings) == problems


def test_the_operator_command_reports_every_bad_read_option_and_exits_2() -> None:
    result = CliRunner().invoke(
        app,
        [
            "operator",
            "--kubeconfig", "/nonexistent/kubeconfig",
            "--inflight-read-interval", "0",
            "--inflight-read-timeout", "nan",
            "--inflight-read-concurrency", "0",
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        "error: --inflight-read-interval 0: give seconds above 0 and at most 60 (default 0.5)",
        "error: --inflight-read-timeout nan: give seconds above 0 and at most 30 (default 1)",
        "error: --inflight-read-concurrency 0: give a whole number from 1 to 1024 (default 32)",
    ]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_operator_command_documents_the_read_options() -> None:
    command = typer.main.get_command(app).commands["operator"]  # type: ignore[attr-defined]
    helps = {param.opts[0]: param.help for param in command.params}
    for option in ("--inflight-read-interval", "--inflight-read-timeout", "--inflight-read-concurrency"):
        assert (helps[option] or "").strip(), option


# -- metrics, from reads of real servers on loopback -----------------------------------------------


def reads(registry: CollectorRegistry) -> dict[str, float]:
    found = {
        o: registry.get_sample_value("phalanx_operator_inflight_reads_total", {"outcome": o})
        for o in OUTCOMES
    }
    return {outcome: value for outcome, value in found.items() if value}


def sample(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


async def test_every_outcome_is_exported_at_zero_from_the_start() -> None:
    registry = CollectorRegistry()
    EngineInFlight(pods_at(1), metrics=ReadMetrics(registry))
    for outcome in OUTCOMES:
        assert registry.get_sample_value("phalanx_operator_inflight_reads_total", {"outcome": outcome}) == 0
    assert sample(registry, "phalanx_operator_draining_entry_pods") == 0
    assert sample(registry, "phalanx_operator_draining_entry_pods_unknown") == 0
    assert sample(registry, "phalanx_operator_inflight_read_duration_seconds_count") == 0


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [("ok", OK), ("hang", TIMEOUT), ("garbage", BAD_PAGE), ("error", BAD_PAGE), ("cut", ERROR)],
)
async def test_a_read_is_counted_by_outcome_and_timed(mode: str, outcome: str) -> None:
    engine, registry = Engine(), CollectorRegistry()
    engine.mode = mode
    async with serving(engine) as port, aiohttp.ClientSession() as session:
        source = EngineInFlight(pods_at(port), ReadSettings(timeout_s=0.3), metrics=ReadMetrics(registry))
        source.track("ns", "m", {"m-0-decode-0-0"})
        await source.scrape_once(session)
    assert reads(registry) == {outcome: 1}
    assert sample(registry, "phalanx_operator_inflight_read_duration_seconds_count") == 1
    took = sample(registry, "phalanx_operator_inflight_read_duration_seconds_sum")
    assert took is not None and (0.3 <= took < 2.0 if mode == "hang" else took < 0.3)
    assert sample(registry, "phalanx_operator_draining_entry_pods_unknown") == (0 if mode == "ok" else 1)


async def test_refused_and_unaddressable_pods_are_counted_apart() -> None:
    engine, registry = Engine(), CollectorRegistry()
    async with serving(engine) as port:
        pass  # closed again: connections are refused

    async def fetch(_namespace: str, name: str) -> dict[str, Any] | None:
        if name == "gone":
            return None
        if name == "no-ip":
            return entry_pod("", None)
        if name == "unreadable":
            raise ConnectionResetError("API server went away")
        return await pods_at(port)("ns", name)

    async with aiohttp.ClientSession() as session:
        source = EngineInFlight(fetch, ReadSettings(timeout_s=0.5), metrics=ReadMetrics(registry))
        source.track("ns", "m", {"refused", "gone", "no-ip", "unreadable"})
        await source.scrape_once(session)
    assert reads(registry) == {REFUSED: 1, NO_ADDRESS: 2, POD_UNREADABLE: 1}
    # Only pages that were asked for are timed.
    assert sample(registry, "phalanx_operator_inflight_read_duration_seconds_count") == 1


async def test_the_draining_and_unknown_gauges_follow_the_tracked_pods_and_the_counts_age() -> None:
    engine, registry, clock = Engine(), CollectorRegistry(), Clock()
    async with serving(engine) as port, aiohttp.ClientSession() as session:
        inner = pods_at(port)

        async def fetch(namespace: str, name: str) -> dict[str, Any] | None:
            return None if name == "b" else await inner(namespace, name)

        source = EngineInFlight(fetch, metrics=ReadMetrics(registry), clock=clock)
        source.track("ns", "m", {"a", "b"})
        source.track("other", "n", {"c"})
        assert sample(registry, "phalanx_operator_draining_entry_pods") == 3
        assert sample(registry, "phalanx_operator_draining_entry_pods_unknown") == 3  # nothing read yet
        await source.scrape_once(session)
        assert sample(registry, "phalanx_operator_draining_entry_pods_unknown") == 1  # b has no address
        clock.now += 2.5  # no read since: too old to trust
        assert sample(registry, "phalanx_operator_draining_entry_pods_unknown") == 3
        source.track("ns", "m", ())
        source.track("other", "n", ())
        assert sample(registry, "phalanx_operator_draining_entry_pods") == 0
        assert sample(registry, "phalanx_operator_draining_entry_pods_unknown") == 0


async def test_the_operators_own_metrics_page_shows_the_reads() -> None:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],  # never contacted
            "users": [{"name": "u", "user": {"token": "unused"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )
    client = AsyncClient(config)
    try:
        operator = Operator(client, OperatorOptions(in_flight_reads=ReadSettings(timeout_s=0.25)))
        assert operator.in_flight.timeout_s == 0.25
        operator.in_flight.track("ns", "m", {"m-0-decode-0-0"})
        async with TestClient(TestServer(operator.health_app())) as http:
            page = await (await http.get("/metrics")).text()
    finally:
        await client.close()
    assert 'phalanx_operator_inflight_reads_total{outcome="refused"} 0.0' in page
    assert "phalanx_operator_inflight_read_duration_seconds_count 0.0" in page
    assert "phalanx_operator_draining_entry_pods 1.0" in page
    assert "phalanx_operator_draining_entry_pods_unknown 1.0" in page
