"""`phalanx up` reads AutoscalingPolicies from its files and shows what each one decided."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from phalanx.embedded.specs import servings_from_text
from phalanx.embedded.view import render_status
from tests.conftest import EXAMPLES

POLICY = """\
apiVersion: serving.phalanx.dev/v1alpha1
kind: AutoscalingPolicy
metadata: {name: tiny-load}
spec:
  metrics: [{name: inflight, targetValue: 4}]
  homogeneousTarget: {minReplicas: 0, maxReplicas: 3, target: {targetRef: {name: tiny}}}
"""


def test_a_deployments_autoscaling_and_a_policy_of_its_own_are_both_taken() -> None:
    deployment = (EXAMPLES / "quickstart-deployment.yaml").read_text()
    deployment += "  autoscaling: {minReplicas: 1, maxReplicas: 4, queuePerGroup: 4}\n"
    loaded = servings_from_text(deployment, "d.yaml")
    assert loaded.errors == [] and loaded.warnings == []
    assert [p.name for p in loaded.policies] == ["tiny"]
    alone = servings_from_text(POLICY, "p.yaml")
    assert (alone.errors, alone.servings, [p.name for p in alone.policies]) == ([], [], ["tiny-load"])


def test_a_policy_on_roles_is_taken() -> None:
    text = POLICY.replace(
        "homogeneousTarget: {minReplicas: 0, maxReplicas: 3, target: {targetRef: {name: tiny}}}",
        "disaggregatedTarget: {targetRef: {name: tiny}, roles: {prefill: {minReplicas: 1, maxReplicas: 2}}}",
    )
    loaded = servings_from_text(text, "p.yaml")
    assert (loaded.errors, loaded.warnings) == ([], [])
    assert [p.name for p in loaded.policies] == ["tiny-load"]


def policy(name: str, status: dict[str, Any], observe_only: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "observeOnly": observe_only,
            "homogeneousTarget": {
                "target": {"targetRef": {"name": "demo"}},
                "minReplicas": 0,
                "maxReplicas": 3,
            },
        },
        "status": status,
    }


def rendered(*policies: dict[str, Any]) -> str:
    console = Console(width=250, record=True)
    console.print(render_status({"policies": list(policies)}))
    return console.export_text()


def test_the_view_shows_each_policys_counts_mode_and_reason_or_why_it_does_not_act() -> None:
    decided = policy(
        "demo-load",
        {
            "homogeneousStatus": {
                "desiredReplicas": 3,
                "currentReplicas": 1,
                "readyReplicas": 1,
                "mode": "Stable",
                "reason": "inflight 8 over 1 group at target 2 per group asks for 4",
            }
        },
        observe_only=True,
    )
    refused = policy(
        "demo-other",
        {
            "conditions": [
                {
                    "type": "ConflictingAutoscaler",
                    "status": "True",
                    "reason": "TargetOwnedByAnotherPolicy",
                    "message": "ModelServing demo is already scaled by AutoscalingPolicy demo-load",
                }
            ]
        },
    )
    text = rendered(decided, refused, policy("demo-new", {}))
    assert "AutoscalingPolicies" in text
    row = next(line for line in text.splitlines() if "demo-load" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:6] == ["demo-load", "demo", "3", "1", "1", "Stable (observe only)"]
    assert cells[6].endswith("asks for 4")
    assert "already scaled by AutoscalingPolicy demo-load" in text
    assert "no decision yet" in text


def test_a_policy_on_roles_shows_one_row_per_role() -> None:
    roles = [
        {"name": "decode", "desiredReplicas": 2, "currentReplicas": 1, "readyReplicas": 1, "mode": "Stable"},
        {"name": "prefill", "desiredReplicas": 1, "currentReplicas": 1, "readyReplicas": 1, "mode": "Stable"},
    ]
    text = rendered(policy("pd", {"disaggregatedStatus": {"roles": roles}}))
    rows = [[c.strip() for c in line.split("│")[1:6]] for line in text.splitlines() if "pd (" in line]
    assert rows == [["pd (decode)", "demo", "2", "1", "1"], ["pd (prefill)", "demo", "1", "1", "1"]]
