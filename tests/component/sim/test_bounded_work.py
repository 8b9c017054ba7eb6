"""One large request never holds a simulator process: /health keeps answering (a liveness probe
keeps passing) while long and over-long prompts are read, and the body size is capped."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from .conftest import SimProcess, get, wait_health
from .test_openai_api import post

pytestmark = pytest.mark.component


def test_health_answers_while_long_and_over_long_prompts_are_read(
    start_sim: Callable[..., SimProcess],
) -> None:
    sim = start_sim("--zero-latency", "--max-model-len", "150000", "--kv-cache-tokens", "150000")
    wait_health(sim.port, 200)
    prompts = {
        "legal": " ab" * 140_000,  # 140 000 tokens: tokenized and served
        "near miss": "x " * 3_200_000,  # 3.2 M tokens: short enough to be counted exactly
        "far over": "x " * 6_000_000,  # 12 M characters: refused from its length alone
    }
    statuses: dict[str, int] = {}

    def send(name: str) -> None:
        body = json.dumps({"prompt": prompts[name], "max_tokens": 1}).encode()
        statuses[name] = post(sim.port, "/v1/completions", body)[0]

    senders = [threading.Thread(target=send, args=(name,)) for name in prompts]
    for sender in senders:
        sender.start()
    slowest = 0.0
    probes = 0
    while any(sender.is_alive() for sender in senders) or probes < 5:
        started = time.monotonic()
        assert get(sim.port, "/health", timeout=5)[0] == 200
        slowest = max(slowest, time.monotonic() - started)
        probes += 1
        time.sleep(0.02)
    for sender in senders:
        sender.join()
    assert statuses == {"legal": 200, "near miss": 400, "far over": 400}
    assert slowest < 0.5, f"/health took {slowest:.2f} s while prompts were read"


def test_a_body_over_the_limit_is_a_413_that_names_the_flag(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--zero-latency", "--max-body-mib", "0.01")
    wait_health(sim.port, 200)
    status, _, answer = post(sim.port, "/v1/completions", json.dumps({"prompt": "w " * 10_000}).encode())
    assert status == 413
    error = json.loads(answer)["error"]
    assert error["param"] == "body"
    assert "--max-body-mib" in error["message"]
    assert get(sim.port, "/health")[0] == 200
