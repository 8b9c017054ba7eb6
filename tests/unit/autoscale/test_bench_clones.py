"""The clones' shared helpers: HPA's tolerance band and the concurrency Knative's KPA scales on."""

from __future__ import annotations

import pytest

from phalanx.autoscale.types import Signals, UnitSignals
from tests.unit.autoscale.test_clones import clones


@pytest.mark.parametrize(
    ("ratio", "tolerance", "expected"),
    [
        (1.0, 0.1, True),
        (1.25, 0.25, True),  # the band's edge: no change (HPA acts only beyond the tolerance)
        (0.75, 0.25, True),
        (1.05, 0.1, True),
        # In floating point 1 - 1.1 is just over 0.1: the clone acts there.
        (1.1, 0.1, False),
        (1.11, 0.1, False),
        (0.89, 0.1, False),
        (1.0, 0.0, True),
        (1.01, 0.0, False),
    ],
)
def test_within_the_tolerance_is_a_ratio_near_one(ratio: float, tolerance: float, expected: bool) -> None:
    assert clones.within(ratio, tolerance) is expected


def test_concurrency_counts_the_engines_and_what_is_held_in_front_of_them() -> None:
    signals = Signals(
        units=(
            UnitSignals("a", True, inflight=3.0, queue=2.0),
            UnitSignals("b", True, inflight=None, queue=1.0),  # not scraped this pass: none counted
            UnitSignals("c", True, inflight=4.0, queue=5.0, draining=True),  # in flight still counts
            UnitSignals("d", False, inflight=9.0, queue=9.0),  # not ready: serves nothing yet
        ),
        admission_queue=6,
    )
    assert clones.concurrency(signals) == 3.0 + 4.0 + 2.0 + 1.0 + 6
    assert clones.concurrency(Signals(units=(), admission_queue=2)) == 2.0
