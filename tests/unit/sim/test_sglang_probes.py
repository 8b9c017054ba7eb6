"""In SGLang's flavour the simulator answers the paths the SGLang recipe's probes ask, as SGLang does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from tests.component.sim.conftest import SimProcess, get, start_sim, wait_health

__all__ = ["start_sim"]  # the fixture, imported so this module can use it

SGLANG_PREFILL = ["--served-model-name", "m", "--disaggregation-mode", "prefill"]


def first_answer(port: int, path: str, timeout: float = 15.0) -> int:
    """The status of the first answer once the server listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            return get(port, path, timeout=1.0)[0]
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_sglang_flavour_answers_ready_and_health_generate(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim(*SGLANG_PREFILL, "--startup-delay", "3")
    assert first_answer(sim.port, "/ready") == 503  # still loading, as SGLang before its warm-up
    wait_health(sim.port, 200)
    assert get(sim.port, "/ready", timeout=2.0)[0] == 200
    assert get(sim.port, "/health_generate", timeout=2.0)[0] == 200


def test_vllm_flavour_has_no_sglang_paths(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--served-model-name", "m")
    wait_health(sim.port, 200)
    assert get(sim.port, "/ready", timeout=2.0)[0] == 404
