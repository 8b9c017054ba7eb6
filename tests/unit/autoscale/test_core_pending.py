"""Units stuck Pending lower the count to what can be placed, with a Warning, and scale-up resumes."""

from __future__ import annotations

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import AutoscaleEvent, History, Signals
from tests.unit.autoscale.core_builders import pending, policy, run, units

BUSY = units(2, inflight=20.0)  # 40 queued at target 5: asks for 8


def test_a_unit_pending_past_the_timeout_lowers_the_count_with_a_warning() -> None:
    signals = Signals(units=(*BUSY, *pending(1, since=0.0)))
    decision = autoscale(policy(pending_timeout=300.0), signals, 312.0, History())
    assert (decision.current, decision.desired) == (3, 2)
    assert decision.events == (
        AutoscaleEvent(
            "Warning",
            "ScaleUpBlocked",
            "group g100 has been pending 312 s (timeout 300 s); desired lowered from 8 to 2, "
            "what the platform can place",
        ),
    )
    assert (
        "lowered to 2: 1 group pending past the timeout (g100) and no room to place more" in decision.reason
    )


def test_before_the_timeout_a_pending_unit_is_just_on_its_way() -> None:
    signals = Signals(units=(*BUSY, *pending(1, since=0.0)))
    decision = autoscale(policy(pending_timeout=300.0), signals, 300.0, History())
    assert (decision.desired, decision.events) == (8, ())


def test_with_no_inventory_the_ceiling_is_kept_and_scale_up_is_tried_again_after_the_timeout() -> None:
    chosen = policy(pending_timeout=300.0)
    stuck = Signals(units=(*BUSY, *pending(2, since=0.0)))
    placed = Signals(units=BUSY)
    decisions = run(chosen, [(301.0, stuck), (315.0, placed), (600.0, placed), (602.0, placed)])
    assert [d.desired for d in decisions] == [2, 2, 2, 8]
    assert decisions[1].history.placement_limit == 2
    assert decisions[1].history.placement_retry_at == 601.0
    assert "capped at 2: what the platform can place" in decisions[1].reason
    assert decisions[3].history.placement_limit is None


def test_with_an_inventory_the_cap_follows_what_can_be_placed() -> None:
    chosen = policy(pending_timeout=300.0)
    passes = [
        (301.0, Signals(units=(*BUSY, *pending(1, since=0.0)), placeable=0)),
        (315.0, Signals(units=BUSY, placeable=0)),
        (330.0, Signals(units=BUSY, placeable=3)),
    ]
    assert [d.desired for d in run(chosen, passes)] == [2, 2, 5]


def test_a_stuck_unit_recovers_once_room_appears() -> None:
    signals = Signals(units=(*BUSY, *pending(1, since=0.0)), placeable=6)
    decision = autoscale(policy(pending_timeout=300.0), signals, 400.0, History())
    assert decision.desired == 8
    assert decision.events[0].message.endswith("the platform reports room again, desired stays 8")


def test_min_replicas_is_kept_even_when_units_are_stuck() -> None:
    signals = Signals(units=(*units(1, inflight=20.0), *pending(2, since=0.0)))
    assert autoscale(policy(min_replicas=3, pending_timeout=60.0), signals, 100.0, History()).desired == 3


def test_nothing_placeable_at_zero_starts_nothing() -> None:
    decision = autoscale(policy(), Signals(units=(), admission_queue=5, placeable=0), 0.0, History())
    assert decision.desired == 0
    assert "capped at 0: what the platform can place" in decision.reason


def test_the_remembered_ceiling_never_removes_a_unit_that_was_placed_since() -> None:
    # The stuck unit got placed after all: the ceiling of 2 must not take it away again.
    chosen = policy(pending_timeout=300.0)
    passes = [
        (301.0, Signals(units=(*BUSY, *pending(1, since=0.0)))),
        (315.0, Signals(units=units(3, inflight=14.0))),
    ]
    decisions = run(chosen, passes)
    assert [d.desired for d in decisions] == [2, 3]
    assert decisions[1].history.placement_limit == 3
