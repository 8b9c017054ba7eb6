"""Every key of every config.json fixture, given a wrong value: the reader answers with problems on keys
or an architecture, and planning that architecture gives a plan or a PlanningError; never another
exception, and never work that grows with a number in the file (each case is timed)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest

from phalanx import planner
from phalanx.planner.hf_config import architecture_from_config
from phalanx.planner.types import PlanningError, PlanRequest
from tests.mutation import field_paths, replaced

CONFIGS = Path(__file__).parent / "configs"
WRONG = (None, [], [[0]], {}, "x", 0, -1, 1.5, True, 2**63, 10**30)
SHAPE = planner.shape_for_instance("p5.48xlarge")


@pytest.mark.parametrize("fixture", sorted(p.name for p in CONFIGS.glob("*.json")))
def test_a_wrong_value_under_any_key_is_a_problem_or_a_plan(fixture: str) -> None:
    config = json.loads((CONFIGS / fixture).read_text())
    slowest = 0.0
    for path in field_paths(config, longest_list=4):
        for value in WRONG:
            started = time.monotonic()
            parsed = architecture_from_config(replaced(config, path, value), "fuzzed")
            if parsed.model is not None:
                with contextlib.suppress(PlanningError):
                    planner.make_plan(PlanRequest(model=parsed.model, shape=SHAPE, max_model_len=4096))
            else:
                assert parsed.errors
            slowest = max(slowest, time.monotonic() - started)
    # Generous for a loaded 2-core machine; an unbounded loop over a huge number takes minutes.
    assert slowest < 5, slowest
