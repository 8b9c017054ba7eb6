"""Real pages of our simulator (`phalanx sim` serves `SimMetrics.render()` as `/metrics`): with known
observations, from a running engine, and from a `phalanx sim` process on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from phalanx.autoscale.observe.engine import UnitFields, observe_unit
from phalanx.autoscale.observe.snapshot import PageSnapshot
from phalanx.sim.blocks import BlockManager
from phalanx.sim.engine import Engine
from phalanx.sim.metrics import SimMetrics
from phalanx.sim.protocol import Limits, parse_request
from phalanx.sim.scheduler import LatencyModel, Scheduler

LABELS = {"model_name": "m", "engine": "0"}


def sim_metrics() -> SimMetrics:
    return SimMetrics("m", max_model_len=128, block_size=4, num_gpu_blocks=64)


def test_known_observations_on_a_simulator_page() -> None:
    metrics = sim_metrics()
    metrics.ttft.labels(**LABELS).observe(0.07)  # before the window: must not count
    first, snapshot = observe_unit(metrics.render().decode(), None, 50.0)
    assert first == UnitFields(waiting=0, running=0, kv_usage=0)
    for _ in range(20):
        metrics.ttft.labels(**LABELS).observe(0.3)  # (0.25, 0.5]
    metrics.ttft.labels(**LABELS).observe(3.0)  # (2.5, 5.0]
    for _ in range(3):
        metrics.observe_new_request(100)
    metrics.generation_tokens.labels(**LABELS).inc(60)
    metrics.itl.labels(**LABELS).observe(0.02)  # (0.01, 0.025]
    metrics.waiting.labels(**LABELS).set(2)
    metrics.running.labels(**LABELS).set(3)
    metrics.kv_usage.labels(**LABELS).set(0.25)
    fields, _ = observe_unit(metrics.render().decode(), snapshot, 60.0)
    assert (fields.waiting, fields.running, fields.kv_usage) == (2, 3, 0.25)
    assert fields.tokens_per_second == pytest.approx((300 + 60) / 10)
    assert fields.prompt_tokens_per_second == pytest.approx(300 / 10)
    # 21 in the window; rank 19.95 is in (0.25, 0.5], which holds the first 20: 0.25 + 0.25 * 19.95/20.
    assert fields.ttft_p95 == pytest.approx(0.499375)
    # One observation in (0.01, 0.025]: rank 0.95 -> 0.01 + 0.015 * 0.95.
    assert fields.itl_p95 == pytest.approx(0.02425)


def test_a_restarted_simulator_voids_the_window() -> None:
    metrics = sim_metrics()
    metrics.observe_new_request(500)
    _, snapshot = observe_unit(metrics.render().decode(), None, 0.0)
    restarted = sim_metrics()
    restarted.observe_new_request(10)
    fields, snapshot = observe_unit(restarted.render().decode(), snapshot, 15.0)
    assert fields.tokens_per_second is None
    restarted.observe_new_request(30)
    assert observe_unit(restarted.render().decode(), snapshot, 30.0)[0].tokens_per_second == 2.0


async def test_a_running_engine_s_pages() -> None:
    scheduler = Scheduler(
        BlockManager(64, 4),
        LatencyModel(0.004, 0.0, 0.002, 0.0),
        max_num_seqs=4,
        max_num_batched_tokens=512,
        max_model_len=128,
    )
    engine = Engine(scheduler, sim_metrics(), seed=0)
    limits = Limits(served_model_names=("m",), max_model_len=128, default_max_tokens=8)
    loop_task = asyncio.create_task(engine.run())

    async def one(request_id: str) -> None:
        body = {"prompt": "one two three four", "max_tokens": 5}
        handle = engine.submit(parse_request(body, chat=False, limits=limits), request_id)
        try:
            async for _ in handle.events():
                pass
        finally:
            engine.release(handle)

    try:
        _, snapshot = observe_unit(engine.metrics.render().decode(), None, 0.0)
        await asyncio.gather(*(one(f"r{i}") for i in range(6)))
        page = engine.metrics.render().decode()
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
    fields, _ = observe_unit(page, snapshot, 2.0)
    prompt = engine.metrics.registry.get_sample_value("vllm:prompt_tokens_total", LABELS)
    assert prompt is not None and prompt > 0
    assert fields.tokens_per_second == pytest.approx((prompt + 6 * 5) / 2.0)
    assert (fields.waiting, fields.running, fields.kv_usage) == (0, 0, 0)
    # Six first tokens after at least one 4 ms prefill step; the sim's own clock is real time here.
    assert fields.ttft_p95 is not None and 0.001 <= fields.ttft_p95 <= 5.0
    assert fields.itl_p95 is not None and 0.0 < fields.itl_p95 <= 5.0
    # Six requests held a batch slot from their first step to their fifth token (5 steps of >= 2 ms).
    count = engine.metrics.registry.get_sample_value("vllm:request_inference_time_seconds_count", LABELS)
    assert count == 6
    assert fields.request_seconds is not None and 0.008 <= fields.request_seconds <= 5.0


HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _request(port: int, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def sim_port() -> Iterator[int]:
    """A `phalanx sim` process on loopback, killed afterwards."""
    port = _free_port()
    args = [sys.executable, "-m", "phalanx", "sim", "--served-model-name", "tiny", "--host", HOST,
            "--port", str(port), "--join-port", str(_free_port()), "--max-model-len", "512",
            "--prefill-overhead", "0.005", "--inter-token-latency", "0.002"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if _request(port, "GET", "/health")[0] == 200:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "phalanx sim did not come up"
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.component
def test_a_simulator_process_scraped_over_loopback(sim_port: int) -> None:
    status, page = _request(sim_port, "GET", "/metrics")
    assert status == 200
    # Kept as JSON between passes, as the shell will.
    _, first = observe_unit(page.decode(), None, time.monotonic())
    assert first is not None
    stored = json.dumps(first.to_json())
    for _ in range(3):
        body = {"model": "tiny", "prompt": "hello there", "max_tokens": 4, "ignore_eos": True}
        assert _request(sim_port, "POST", "/v1/completions", body)[0] == 200
    _, page = _request(sim_port, "GET", "/metrics")
    now = time.monotonic()
    fields, _ = observe_unit(page.decode(), PageSnapshot.from_json(json.loads(stored)), now)
    assert (fields.waiting, fields.running, fields.kv_usage) == (0, 0, 0)
    assert fields.tokens_per_second is not None and fields.tokens_per_second > 0
    assert fields.ttft_p95 is not None and fields.itl_p95 is not None
