"""The KAITO comparison in docs/planner.md and bench/planner/results.md is what the script prints today.

A change to the planner that moves a figure must re-run `bench/planner/compare_kaito.py` and record it.
"""

from __future__ import annotations

import contextlib
import io
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def script_output() -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        runpy.run_path(str(ROOT / "bench" / "planner" / "compare_kaito.py"), run_name="__main__")
    return buffer.getvalue().strip()


def test_recorded_tables_are_the_scripts_output() -> None:
    table = script_output()
    assert table.count("\n| ") >= 15
    assert table in (ROOT / "bench" / "planner" / "results.md").read_text()
    assert table in (ROOT / "docs" / "planner.md").read_text()


def test_the_comparison_shows_kaitos_half_gpu_rule() -> None:
    rows = {
        tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in script_output().splitlines()
    }
    assert "1 x DP 4 x TP 1" in rows[("llama-3.1-8b-instruct", "Standard_NC96ads_A100_v4")]  # both
    kaito_tp = rows[("gpt-oss-120b", "p5.48xlarge")].split("|")[4]
    assert "TP 8" in kaito_tp  # its catalog size is over half of one GPU
