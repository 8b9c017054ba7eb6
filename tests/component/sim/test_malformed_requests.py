"""Whatever a client sends to a simulator process, a mistake is a 4xx in OpenAI's error shape,
never a 500 and never a traceback in the log."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.sim.malformed import bodies

from .conftest import SimProcess, wait_health
from .test_openai_api import post

pytestmark = pytest.mark.component


def test_malformed_bodies_never_get_a_5xx(start_sim: Callable[..., SimProcess]) -> None:
    sim = start_sim("--zero-latency", "--max-model-len", "64", "--default-max-tokens", "2")
    wait_health(sim.port, 200)

    @settings(max_examples=150, deadline=None)
    @given(path=st.sampled_from(["/v1/completions", "/v1/chat/completions"]), body=bodies)
    def check(path: str, body: bytes) -> None:
        status, _, answer = post(sim.port, path, body)
        assert status < 500, (status, body[:300], answer[:300])
        if status >= 400:
            error = json.loads(answer)["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["message"]

    check()
    assert "Traceback" not in sim.log()
