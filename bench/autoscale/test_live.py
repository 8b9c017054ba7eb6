"""The live run in under a minute: real `phalanx up`, simulator groups and router on loopback.

Correctness only, not performance: no request is lost while the policy scales up from zero, down
(draining) and back from zero, and it did each of those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from live import SHORT, SPEC, run

pytestmark = pytest.mark.component


def fast_spec(tmp_path: Path) -> Path:
    """The example with a pass a second, a 3 s scale-down window and groups that load in 1 s."""
    serving, policy = [d for d in yaml.safe_load_all(SPEC.read_text()) if d]
    args: list[str] = serving["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0][
        "args"
    ]
    args[args.index("--startup-delay") + 1] = "1"
    spec: dict[str, Any] = policy["spec"]
    spec["period"] = "1s"
    spec["behavior"]["scaleUp"]["stablePolicy"]["period"] = "1s"
    spec["behavior"]["scaleUp"]["panicPolicy"]["panicModeHold"] = "3s"
    spec["behavior"]["scaleDown"].update(period="1s", stabilizationWindow="3s")
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump_all([serving, policy]))
    return path


def test_a_short_live_run_scales_up_from_zero_down_to_zero_and_back_dropping_nothing(tmp_path: Path) -> None:
    result = run(fast_spec(tmp_path), SHORT, log_dir=tmp_path / "logs")
    live = result["live"]
    assert live["requests"] > 0
    assert live["dropped"] == 0, live["errors"]
    assert live["peak_units"] >= 2, live["decisions"]
    assert live["scale_downs"] >= 1 and live["reached_zero_at_s"] is not None, live["decisions"]
    first, again = live["from_zero"]
    assert first["requests"] > 0 and first["decision_s"] is not None
    assert again["requests"] > 0 and again["decision_s"] is not None, live["decisions"]
    assert live["leftover_pids"] == [], "phalanx up left processes behind"
    assert result["replayer"]["dropped"] == 0
