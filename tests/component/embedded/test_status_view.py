"""`phalanx status` from a second terminal while a role scales up, and the pod logs after a clean stop."""

from __future__ import annotations

import re
from pathlib import Path

import openai
import pytest

from tests.component.embedded.harness import running_up
from tests.component.embedded.test_up import ENGINE_ARGS, fast

pytestmark = pytest.mark.component

LOADING = 4.0  # seconds a new entry pod takes to turn ready (the simulator's --startup-delay)


def test_a_role_scale_up_reads_as_serving_and_a_clean_stop_leaves_clean_logs(tmp_path: Path) -> None:
    args = ["--served-model-name", "tiny-test", "--port", "8000", "--join-port", "8001"]
    spec = fast(**{ENGINE_ARGS: [*args, "--startup-delay", str(LOADING)]})
    spec["spec"]["replicas"] = 1
    entry = spec["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]
    entry["livenessProbe"]["failureThreshold"] = 10  # loading is not hanging
    with running_up(tmp_path, spec) as up:
        up.wait_available(timeout=60)
        assert up.phalanx("scale", "quickstart", "--replicas", "2", "--role", "sim").returncode == 0
        up.wait_for(
            lambda p: any(pod["name"] == "quickstart-0-sim-1-0" for pod in p["pods"]), "the new role instance"
        )
        shown = up.phalanx("status")
        assert shown.returncode == 0, shown.stderr
        group = next(line for line in shown.stdout.splitlines() if line.startswith("│ quickstart-0 "))
        assert "Starting" in group and "yes (sim 1/2)" in group, shown.stdout  # serving while it scales
        serving = next(line for line in shown.stdout.splitlines() if line.startswith("│ quickstart "))
        assert re.search(r"│ 1/1 +│ sim 1/2 ", serving), serving
        assert re.search(r"\d\d:\d\d:\d\d pod/quickstart-0-sim-1-0 Scheduled: ", shown.stdout), shown.stdout
        reply = openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0).completions.create(
            model="tiny-test", prompt="still serving?", max_tokens=4
        )
        assert reply.choices[0].text
        assert up.stop() == 0
    logs = sorted((up.state_dir / "logs").rglob("*.log"))
    assert len(logs) == 4, logs  # two role instances of an entry and a worker
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text and "Exception in callback" not in text, f"{log}:\n{text}"
        assert not re.search(r"\('[\d.]+', \d+\)", text), f"a Python tuple in {log}:\n{text}"
    entries = [log.read_text() for log in logs if re.search(r"-sim-\d-0/", str(log))]
    assert all("drained; exiting" in text for text in entries), entries
