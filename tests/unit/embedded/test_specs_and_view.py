"""Pure parts of `phalanx up`: spec files to ModelServings, the status view."""

from __future__ import annotations

from rich.console import Console

from phalanx.embedded.specs import servings_from_text
from phalanx.embedded.view import render_status
from tests.conftest import EXAMPLES


def test_a_model_deployment_is_compiled_for_up() -> None:
    loaded = servings_from_text((EXAMPLES / "quickstart-deployment.yaml").read_text(), "d.yaml")
    assert loaded.errors == []
    assert [ms.name for ms in loaded.servings] == ["tiny"]


def test_spec_errors_are_rendered_with_file_line_and_field() -> None:
    text = (EXAMPLES / "quickstart.yaml").read_text().replace("replicas: 2", "replicas: -2", 1)
    loaded = servings_from_text(text, "q.yaml")
    assert loaded.servings == []
    assert any(e.startswith("q.yaml:") and "spec.replicas" in e for e in loaded.errors)


def test_an_empty_file_says_so() -> None:
    assert servings_from_text("", "empty.yaml").errors


def test_the_status_view_names_groups_and_pods() -> None:
    payload = {
        "router": {"url": "http://127.0.0.1:8000", "inFlight": {"team-a/demo-0-sim-0-0": 2}},
        "gpus": {"total": 4, "free": 2},
        "servings": [
            {
                "metadata": {"name": "demo"},
                "spec": {"replicas": 1},
                "status": {
                    "replicas": 1,
                    "availableReplicas": 0,
                    "conditions": [{"type": "Progressing", "status": "True"}],
                    "groups": [
                        {"name": "demo-0", "index": 0, "phase": "BackingOff", "message": "failed 2 times"}
                    ],
                },
            }
        ],
        "pods": [{"name": "demo-0-sim-0-0", "ready": False, "phase": "Running", "restarts": 3}],
        "events": [
            {"time": "2026-11-23T06:56:21.28Z", "type": "Warning", "reason": "RoleRecreate", "message": "x"}
        ],
    }
    console = Console(width=200, record=True)
    console.print(render_status(payload))
    text = console.export_text()
    assert "in flight 2" in text and "GPUs 2/4 free" in text
    assert "BackingOff" in text and "failed 2 times" in text
    assert "demo-0-sim-0-0" in text and "06:56:21 RoleRecreate" in text
