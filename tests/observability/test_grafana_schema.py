"""The shipped dashboards decoded through Grafana's own dashboard model: hack/grafana/main.go, built on
Grafana's Apache-2.0 schema library (github.com/grafana/grafana-foundation-sdk/go), refuses unknown
fields, wrong types and missing required fields (its strict decoder), values out of the schema's bounds
(its Validate), panel types it does not know, targets that are not Prometheus queries, datasource
references to no datasource variable, undefined variables and overlapping panels. docs/observability.md
says what it does not check. Skipped only where Go is missing."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
BUILD = ROOT / "hack" / "grafana" / "build.sh"


@pytest.fixture(scope="module")
def checker() -> str:
    if not shutil.which("go"):
        pytest.skip("Go is not installed: hack/grafana/build.sh builds the dashboard check with Go")
    done = subprocess.run([str(BUILD)], capture_output=True, text=True, check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def run(checker: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [checker, *map(str, paths)], capture_output=True, text=True, check=False, timeout=60
    )


def test_every_shipped_dashboard_passes_grafanas_schema(checker: str) -> None:
    done = run(checker, *DASHBOARDS)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(DASHBOARDS), lines
    for path, line in zip(DASHBOARDS, lines, strict=True):
        board = json.loads(path.read_text())
        targets = sum(len(panel["targets"]) for panel in board["panels"])
        # The check saw every panel and every target (not an empty decode).
        assert line.startswith(f"{path.name}: ok; {len(board['panels'])} panels (timeseries "), line
        assert f", {targets} prometheus targets, {len(board['templating']['list'])} variables" in line, line


def first_panel(board: dict[str, Any]) -> dict[str, Any]:
    panel: dict[str, Any] = board["panels"][0]
    return panel


def overlap(board: dict[str, Any]) -> None:
    board["panels"][1]["gridPos"] = {**board["panels"][0]["gridPos"], "x": 6}


def unknown_variable(board: dict[str, Any]) -> None:
    first_panel(board)["targets"][0]["expr"] += " or vector($nowhere)"


Breakage = Callable[[dict[str, Any]], None]
BROKEN: dict[str, tuple[Breakage, str]] = {
    "unknown panel field": (lambda b: first_panel(b).update(colour="red"), "unexpected field 'colour'"),
    "wrong type": (lambda b: first_panel(b)["gridPos"].update(w="12"), "gridPos.w"),
    "past the grid": (lambda b: first_panel(b)["gridPos"].update(x=30), "must be < 24"),
    "unknown panel type": (lambda b: first_panel(b).update(type="graphh"), 'panel type "graphh"'),
    "unknown option": (lambda b: first_panel(b)["options"].update(lines=2), "unexpected field 'lines'"),
    "missing required option": (lambda b: first_panel(b)["options"].pop("tooltip"), "options.tooltip"),
    "unknown fieldConfig field": (
        lambda b: first_panel(b)["fieldConfig"]["defaults"].update(unitt="s"),
        "unexpected field 'unitt'",
    ),
    "unknown target field": (
        lambda b: first_panel(b)["targets"][0].update(exprr="up"),
        "unexpected field 'exprr'",
    ),
    "datasource to no variable": (
        lambda b: first_panel(b)["targets"][0]["datasource"].update(uid="${source}"),
        "names no datasource variable",
    ),
    "unknown variable type": (lambda b: b["templating"]["list"][0].update(type="dropdown"), '"dropdown"'),
    "undefined variable": (unknown_variable, "undefined variable $nowhere"),
    "overlapping panels": (overlap, "gridPos overlaps panel"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_dashboard_fails(checker: str, tmp_path: Path, name: str) -> None:
    breakage, expected = BROKEN[name]
    board = copy.deepcopy(json.loads(DASHBOARDS[0].read_text()))
    breakage(board)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(board))
    done = run(checker, path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stdout, done.stdout
    assert "broken.json: FAILED" in done.stdout, done.stdout
