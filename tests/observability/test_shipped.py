"""The shipped dashboards and alert rules on their own, without Prometheus: well-formed, on metric names
the code defines, and the chart's files/ the very same files. tests/component/test_prometheus.py runs
them against a real Prometheus."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
CHART_FILES = ROOT / "deploy" / "helm" / "phalanx" / "files"
# Names from outside Phalanx: Prometheus' own and kube-state-metrics'.
EXTERNAL = {"up", "kube_pod_container_status_restarts_total"}
NAME = re.compile(r"\b(phalanx_[a-z_]+|vllm:[a-z_:]+|sglang:[a-z_:]+|kube_[a-z_]+|up)\b(?=\s*[{\[)])")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def defined_names() -> set[str]:
    """Every metric name written as a string in the source (the registries, and the engines' names
    the router and operator read)."""
    names: set[str] = set()
    for path in (ROOT / "src" / "phalanx").rglob("*.py"):
        names.update(
            re.findall(r"[\"'](phalanx_[a-z_]+|vllm:[a-z_:]+|sglang:[a-z_:]+)[\"']", path.read_text())
        )
    return names


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def expressions() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            found += [(f"{path.name}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        found += [(rule["alert"], rule["expr"]) for rule in group["rules"]]
    return found


def test_three_dashboards_ship() -> None:
    assert [p.name for p in DASHBOARDS] == [
        "phalanx-engines.json",
        "phalanx-rollouts.json",
        "phalanx-router.json",
    ]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_well_formed(path: Path) -> None:
    board: dict[str, Any] = json.loads(path.read_text())
    assert board["uid"] == path.stem and board["title"].startswith("Phalanx / ")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in board["panels"]:
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable == "__rate_interval" or variable in variables, (panel["title"], variable)
        pos = panel["gridPos"]
        cell = (pos["x"], pos["y"])
        assert cell not in cells, f"{panel['title']} overlaps another panel"
        cells.add(cell)


def test_every_metric_name_is_one_the_code_defines() -> None:
    defined = defined_names()
    unknown = [
        f"{where}: {name}"
        for where, expr in expressions()
        for name in NAME.findall(expr)
        if name not in EXTERNAL and base_name(name) not in defined and name not in defined
    ]
    assert not unknown, unknown
    # The pattern sees the names at all.
    assert sum(len(NAME.findall(expr)) for _, expr in expressions()) > 50


def runbook_anchors() -> set[str]:
    """The anchors of docs/observability.md's headings, as a Markdown renderer makes them."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / "observability.md").read_text(), re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_rule_pages_with_a_runbook_section() -> None:
    anchors = runbook_anchors()
    alerts = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    asked = ("NoReadyGroup", "HighErrorRatio", "QueueGrowing", "TTFTObjectiveMissed", "GroupCrashLooping",
             "RolloutStuck")  # fmt: skip
    assert {f"Phalanx{name}" for name in asked} <= {rule["alert"] for rule in alerts}
    for rule in alerts:
        assert rule["for"] and rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        path, anchor = rule["annotations"]["runbook"].split("#", 1)
        assert path == "docs/observability.md" and anchor in anchors, rule["alert"]


def test_the_charts_files_are_the_shipped_ones() -> None:
    shipped = {p.name: p for p in [*DASHBOARDS, RULES]}
    linked = {p.name: p for p in CHART_FILES.rglob("*") if p.is_file()}
    assert sorted(linked) == sorted(shipped)
    for name, path in linked.items():
        assert path.is_symlink() and path.resolve() == shipped[name].resolve(), name
