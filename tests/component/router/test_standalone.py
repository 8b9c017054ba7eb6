"""`phalanx router --backend URL` as a user runs it: real router and simulator processes on loopback, the
official `openai` client (sync and async, streaming and not), and a backend killed mid-stream."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest

from tests.component.sim.conftest import FAST, HOST, SimProcess, free_port, get, start_sim, wait_health

__all__ = ["start_sim"]  # the fixture, used by name

pytestmark = pytest.mark.component


@dataclass
class RouterProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    final_log: str = ""  # kept once the process is gone and its temp dir removed

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def log(self) -> str:
        return self.final_log or self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def router_process(*backends: SimProcess, flags: tuple[str, ...] = ()) -> Iterator[RouterProcess]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "router.log"
        args = [sys.executable, "-m", "phalanx", "router", "--host", HOST, "--port", str(port)]
        for backend in backends:
            args += ["--backend", f"http://{HOST}:{backend.port}"]
        args += flags
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
        router = RouterProcess(proc, port, log_path)
        try:
            wait_health(port, 200, timeout=30)
            yield router
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            router.final_log = log_path.read_text(errors="replace")


@pytest.fixture
def two_sims(start_sim: Callable[..., SimProcess]) -> tuple[SimProcess, SimProcess]:
    sims = (start_sim(*FAST), start_sim(*FAST))
    for sim in sims:
        wait_health(sim.port, 200)
    return sims


def test_the_openai_client_sync_and_streaming(two_sims: tuple[SimProcess, SimProcess]) -> None:
    with router_process(*two_sims) as router:
        client = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["tiny"]
        chat = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
        )
        assert chat.choices[0].message.content and chat.usage is not None
        assert chat.usage.completion_tokens == 8
        completion = client.completions.create(model="tiny", prompt="Once upon", max_tokens=5)
        assert completion.choices[0].text
        stream = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True
        )
        pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
        assert len(pieces) == 6
        with pytest.raises(openai.NotFoundError) as info:
            client.completions.create(model="nope", prompt="x", max_tokens=1)
        assert "does not exist" in info.value.message
    assert router.proc.returncode == 0  # SIGTERM drains and exits cleanly
    assert "Traceback" not in router.log()


def test_a_body_over_max_body_mib_is_413(two_sims: tuple[SimProcess, SimProcess]) -> None:
    with router_process(*two_sims, flags=("--max-body-mib", "0.01")) as router:
        client = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.completions.create(model="tiny", prompt="word " * 4000, max_tokens=1)
        assert info.value.status_code == 413
        assert "10485 bytes" in info.value.message
        assert client.completions.create(model="tiny", prompt="short", max_tokens=1).choices
    assert "Traceback" not in router.log()


async def test_the_openai_client_async_spreads_over_both_backends(
    two_sims: tuple[SimProcess, SimProcess],
) -> None:
    import asyncio

    with router_process(*two_sims) as router:
        client = openai.AsyncOpenAI(base_url=router.base_url, api_key="unused", max_retries=0)

        async def one(i: int) -> int:
            stream = await client.completions.create(model="tiny", prompt=f"n{i}", max_tokens=20, stream=True)
            return sum([1 async for c in stream if c.choices and c.choices[0].text])

        counts = await asyncio.gather(*(one(i) for i in range(8)))
        assert counts == [20] * 8
        await client.close()
        served = [_requests_served(sim) for sim in two_sims]
    assert sum(served) == 8 and min(served) >= 2, served  # both backends took a share


def _requests_served(sim: SimProcess) -> int:
    code, body = get(sim.port, "/metrics")
    assert code == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("vllm:request_success_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def test_a_backend_killed_mid_stream_ends_the_stream_within_a_second(
    start_sim: Callable[..., SimProcess],
) -> None:
    slow = start_sim("--inter-token-latency", "0.05")
    wait_health(slow.port, 200)
    with router_process(slow) as router:
        body = {"model": "tiny", "prompt": "tell me", "max_tokens": 400, "stream": True}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{router.base_url}/completions", json=body) as resp,
        ):
            assert resp.status == 200
            events = 0
            killed_at = 0.0
            raw = b""
            async for line in resp.content:
                raw += line
                if line.startswith(b"data: {") and not killed_at:
                    events += 1
                    if events == 3:
                        slow.proc.kill()
                        killed_at = time.monotonic()
            ended = time.monotonic() - killed_at
    assert killed_at and ended < 1.0, f"the stream took {ended:.2f}s to end after the backend died"
    frames = [f for f in raw.split(b"\n\n") if f.strip()]
    assert frames[-1] == b"data: [DONE]"
    error = json.loads(frames[-2].removeprefix(b"data: "))
    assert "error" in error


def test_a_bad_backend_url_is_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "phalanx", "router", "--backend", "localhost:8000"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "expected http://host:port" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
