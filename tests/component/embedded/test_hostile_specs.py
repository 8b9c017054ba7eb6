"""Specs built to hurt `phalanx up` (alias bombs, deep nesting, huge files) are refused with clear
errors while the router, on the same event loop, keeps answering."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from phalanx.api.yamlfile import MAX_DOCUMENT_BYTES
from phalanx.embedded.client import ControlError, call
from phalanx.embedded.daemon import CONTROL_SOCKET
from tests.component.embedded.harness import running_up
from tests.component.embedded.test_up import fast

pytestmark = pytest.mark.component

HEADER = "apiVersion: serving.phalanx.dev/v1alpha1\nkind: ModelServing\nmetadata:\n  name: hostile\n"


def alias_bomb() -> str:
    lines = ["a0: &a0 [" + ",".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    return HEADER + "\n".join(lines) + "\n"


def value_bomb() -> str:
    # Stays under go-yaml's alias ratio; stops at Phalanx's cap on values.
    lines = ["pad:"] + [f"  - &p{i} [1, 2]" for i in range(700)]
    lines += ["b1: &b1 [" + ",".join(f"*p{i}" for i in range(700)) + "]"]
    lines += ["b2: [" + ",".join(["*b1"] * 150) + "]"]
    return HEADER + "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": (alias_bomb(), "alias"),
    "values bomb": (value_bomb(), "values"),
    "deep flow": (HEADER + "x: " + "[" * 100_000 + "]" * 100_000 + "\n", "levels deep"),
    "deep block": (HEADER + "x:\n" + "".join("  " * d + f"k{d}:\n" for d in range(1, 150)), "levels deep"),
    "huge document": (HEADER + "x: " + "y" * MAX_DOCUMENT_BYTES + "\n", "3.0 MiB"),
}


class HealthWatch:
    """Polls the router's /health from a thread; the slowest answer is what a client would see."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/health"
        self.slowest = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    answer.read()
            except OSError:
                self.failures += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
            time.sleep(0.05)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)


async def _raw_post(socket: Path, body: bytes) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as session,
        session.post(
            "http://phalanx/v1/apply", data=io.BytesIO(body), headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, await response.text()


def test_hostile_specs_are_refused_while_the_router_answers(tmp_path: Path) -> None:
    with running_up(tmp_path, fast()) as up:
        up.wait_available(timeout=90)
        with HealthWatch(up.port) as health:
            for case, (text, said) in HOSTILE.items():
                started = time.monotonic()
                answer = call(up.state_dir, "POST", "/v1/apply", {"text": text, "source": "f.yaml"}, 60)
                assert answer["applied"] == [], case
                assert any(said in error for error in answer["errors"]), (case, answer)
                assert time.monotonic() - started < 20, case
            # A body nested too deep to decode as JSON is a 400, not aiohttp's 500 page.
            status, text = asyncio.run(_raw_post(up.state_dir / CONTROL_SOCKET, b"[" * 200_000))
            assert status == 400 and '"error"' in text
            bomb = tmp_path / "bomb.yaml"
            bomb.write_text(alias_bomb())
            applied = up.phalanx("apply", "-f", str(bomb))
            assert applied.returncode == 1 and "alias" in applied.stderr
            assert "Traceback" not in applied.stderr
        assert health.failures == 0
        # Was: the router stopped answering while the bomb expanded (minutes, gigabytes). Read on the
        # event loop, even the bounded reads here stall it ~0.75 s; in a worker thread, ~0.05 s.
        assert health.slowest < 0.5, health.slowest
        assert up.phalanx("status").returncode == 0


def test_a_control_socket_that_never_answers_is_a_clear_error(tmp_path: Path) -> None:
    # What `phalanx apply` met when `up` was stuck reading a bomb: a TimeoutError traceback.
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(state_dir / CONTROL_SOCKET))
    listener.listen()
    try:
        started = time.monotonic()
        with pytest.raises(ControlError) as caught:
            call(state_dir, "POST", "/v1/apply", {"text": "a: 1\n"}, timeout=0.5)
        assert time.monotonic() - started < 5
        assert "did not answer within 0.5 s" in str(caught.value)
    finally:
        listener.close()
