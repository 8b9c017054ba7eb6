"""Leader election policy: who holds the Lease, and when another candidate may take it."""

from __future__ import annotations

import pytest

from phalanx.operator.leader import LeaseState, Timing, decide


@pytest.mark.parametrize(
    ("lease", "now", "step"),
    [
        (None, 100.0, "create"),
        (LeaseState("me", 90.0, 15.0), 100.0, "renew"),
        (LeaseState("me", 10.0, 15.0), 100.0, "renew"),  # ours even when late: renew, do not re-acquire
        (LeaseState("other", 90.0, 15.0), 100.0, "follow"),
        (LeaseState("other", 90.0, 15.0), 105.0, "follow"),  # exactly at expiry: still theirs
        (LeaseState("other", 90.0, 15.0), 105.1, "acquire"),
        (LeaseState(None, 90.0, 15.0), 91.0, "acquire"),  # released on shutdown
        (LeaseState("other", None, 15.0), 91.0, "acquire"),
    ],
)
def test_decide(lease: LeaseState | None, now: float, step: str) -> None:
    assert decide(lease, "me", now) == step


def test_timing_must_let_a_leader_step_down_before_another_takes_over() -> None:
    Timing()
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        Timing(lease_duration=10, renew_deadline=10, retry_period=2)
