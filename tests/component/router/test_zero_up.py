"""`phalanx up` at zero groups: the router holds a request for the ModelServing's model, reports it,
and serves it once a scale-up's first group is ready. Real processes end to end."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.component.embedded.harness import Up, quickstart, running_up

from .held import ChatInBackground

pytestmark = pytest.mark.component

MODEL = "tiny-test"  # what the quickstart's engines serve


def at_zero() -> dict[str, Any]:
    """The quickstart scaled to zero, with test-speed probes."""
    data = quickstart(**{"spec.replicas": 0})
    template = data["spec"]["template"]
    template["restartGracePeriodSeconds"] = 0
    for role in template["roles"]:
        container = role["entryTemplate"]["spec"]["containers"][0]
        container["readinessProbe"]["periodSeconds"] = 1
    return data


def held(up: Up) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{up.port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf'^phalanx_router_held_requests{{model="{MODEL}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def wait_held(up: Up, value: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = held(up)
        if last == value:
            return
        time.sleep(0.1)
    raise AssertionError(f"held requests never read {value} (last {last}):\n{up.log()[-3000:]}")


def test_a_request_at_zero_groups_is_served_by_the_first_group_a_scale_up_starts(tmp_path: Path) -> None:
    with running_up(tmp_path, at_zero()) as up:
        up.wait_for(lambda s: bool(s["servings"]), "the ModelServing applied")
        wait_held(up, 0.0)  # the router knows the model: it has a series, and no pod runs
        assert up.status()["pods"] == []
        chat = ChatInBackground(up.base_url, MODEL, timeout_s=120)
        wait_held(up, 1.0)
        assert up.phalanx("scale", "quickstart", "--replicas", "1").returncode == 0
        assert chat.answer()
        wait_held(up, 0.0)
