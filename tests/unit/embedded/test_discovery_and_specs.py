"""Pure parts of `phalanx up`: router endpoints from pods, spec files to ModelServings, the status view."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from phalanx.api import labels as L
from phalanx.controller.observed import DRAINING_ANNOTATION
from phalanx.embedded.discovery import endpoints_from_pods, http_port
from phalanx.embedded.specs import servings_from_text
from phalanx.embedded.view import render_status
from tests.conftest import EXAMPLES


def entry_pod(
    name: str = "demo-0-sim-0-0",
    *,
    ready: bool = True,
    ports: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
    entry: bool = True,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "team-a",
        "labels": {L.NAME: "demo", L.GROUP_INDEX: "0", L.ENTRY: "true" if entry else "false"},
        "annotations": annotations or {},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-23T00:00:00Z"
    return {
        "metadata": metadata,
        "spec": {"containers": [{"name": "engine", "ports": ports or []}]},
        "status": {
            "podIP": "127.20.0.7",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_an_entry_pod_becomes_a_namespaced_endpoint_on_its_http_port() -> None:
    ports = [{"name": "join", "containerPort": 8001}, {"name": "http", "containerPort": 8000}]
    (endpoint,) = endpoints_from_pods([entry_pod(ports=ports), entry_pod("demo-0-sim-0-1", entry=False)])
    assert endpoint.name == "team-a/demo-0-sim-0-0"
    assert endpoint.url == "http://127.20.0.7:8000"
    assert (endpoint.serving, endpoint.group_index, endpoint.routable) == ("demo", 0, True)


def test_http_port_falls_back_to_the_first_port_then_vllms_default() -> None:
    assert http_port(entry_pod(ports=[{"containerPort": 9000}])) == 9000
    assert http_port(entry_pod()) == 8000


def test_not_ready_draining_and_terminating_entries_take_no_new_requests() -> None:
    pods = [
        entry_pod("a", ready=False),
        entry_pod("b", annotations={DRAINING_ANNOTATION: "2026-11-23T00:00:00Z"}),
        entry_pod("c", deleting=True),
    ]
    assert [e.routable for e in endpoints_from_pods(pods)] == [False, False, False]


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
