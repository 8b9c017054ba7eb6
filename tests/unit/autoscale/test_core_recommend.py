"""Each signal's own recommendation: the ratio rule, unknown values, guards, tolerance, draining."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.recommend import ratio_rule
from phalanx.autoscale.types import History, MetricTarget, SignalName, Signals, UnitSignals
from tests.unit.autoscale.core_builders import pending, policy, units

LOADS: list[SignalName] = ["queue", "inflight", "waiting", "running", "prefill_queued_tokens"]


@pytest.mark.parametrize("signal", LOADS)
def test_a_load_signal_asks_for_the_sum_over_units_divided_by_the_target(signal: SignalName) -> None:
    values: dict[str, Any] = {signal: 9.5}
    signals = Signals(units=units(4, **values))  # 38 in all
    decision = autoscale(policy(MetricTarget(signal, 5.0)), signals, 0.0, History())
    assert decision.recommendations == {signal: 8}
    assert decision.desired == 8
    assert decision.reason.startswith(f"{signal} 38 over 4 groups at target 5 per group asks for 8")


def test_the_queue_counts_the_admission_queue_too() -> None:
    signals = Signals(units=units(2, queue=5.0), admission_queue=20)
    decision = autoscale(policy(MetricTarget("queue", 5.0)), signals, 0.0, History())
    assert decision.recommendations == {"queue": 6}
    assert "admission queue 20 included" in decision.reason


def test_only_the_queue_counts_the_admission_queue() -> None:
    signals = Signals(units=units(2, waiting=5.0), admission_queue=20)
    assert autoscale(policy(MetricTarget("waiting", 5.0)), signals, 0.0, History()).recommendations == {
        "waiting": 2
    }


def test_kv_usage_asks_for_ready_times_mean_over_target() -> None:
    signals = Signals(units=(*units(3, kv_usage=0.9), UnitSignals("g3", True, kv_usage=0.6)))
    decision = autoscale(policy(MetricTarget("kv_usage", 0.6)), signals, 0.0, History())
    assert decision.recommendations == {"kv_usage": 6}  # ceil(4 * 0.825 / 0.6) = ceil(5.5)
    assert decision.reason.startswith("kv_usage 0.825 on average over 4 ready groups at target 0.6")


def test_an_unknown_value_counts_as_zero_toward_scale_up() -> None:
    signals = Signals(units=(*units(3, inflight=10.0), UnitSignals("g3", True)))
    decision = autoscale(policy(), signals, 0.0, History())
    assert decision.recommendations == {"inflight": 6}
    assert "1 group not reporting counted at target for scale-down" in decision.reason


def test_an_unknown_value_counts_at_target_toward_scale_down() -> None:
    signals = Signals(units=(*units(3, inflight=1.0), UnitSignals("g3", True)))
    # Read as 0 the figure would be ceil(3 / 5) = 1; read at target it is ceil(0.6 + 1) = 2.
    assert autoscale(policy(), signals, 0.0, History()).recommendations == {"inflight": 2}


def test_no_data_at_all_keeps_the_current_count() -> None:
    signals = Signals(units=(UnitSignals("g0", True), UnitSignals("g1", True)))
    decision = autoscale(policy(min_replicas=0), signals, 0.0, History())
    assert decision.recommendations == {"inflight": 2}
    assert decision.desired == 2


def test_units_still_pending_are_capacity_on_the_way_so_scale_ups_do_not_stack() -> None:
    # 40 queued at target 5 asked for 8; 4 of them are still starting: nothing more is asked.
    signals = Signals(units=(*units(4, inflight=10.0), *pending(4, since=0.0)))
    decision = autoscale(policy(), signals, 30.0, History())
    assert decision.recommendations == {"inflight": 8}
    assert decision.desired == decision.current == 8


def test_pending_units_hold_their_place_toward_scale_down() -> None:
    signals = Signals(units=(*units(2, inflight=0.0), *pending(2, since=0.0)))
    assert autoscale(policy(), signals, 30.0, History()).recommendations == {"inflight": 2}


def test_draining_units_are_not_counted_and_their_signals_are_ignored() -> None:
    draining = UnitSignals("g9", True, draining=True, inflight=500.0)
    decision = autoscale(policy(), Signals(units=(*units(2, inflight=5.0), draining)), 0.0, History())
    assert (decision.current, decision.ready) == (2, 2)
    assert decision.recommendations == {"inflight": 2}


@pytest.mark.parametrize(
    ("queue", "asks"),
    [(21.0, 4), (22.0, 4), (23.0, 5), (18.0, 4), (15.0, 3)],
)
def test_the_tolerance_band_holds_the_count_while_the_ratio_is_within_ten_percent(
    queue: float, asks: int
) -> None:
    # 4 groups at target 5: 4.2 and 4.4 are within 10% of 4 (the edge is in), 4.6 is not; 3.6 is, 3.0 is not.
    signals = Signals(units=units(4, inflight=queue / 4))
    assert autoscale(policy(), signals, 0.0, History()).recommendations == {"inflight": asks}


def test_a_held_figure_says_it_was_held_by_the_tolerance() -> None:
    decision = autoscale(policy(), Signals(units=units(4, inflight=21.0 / 4)), 0.0, History())
    assert (
        decision.reason == "inflight 21 over 4 groups at target 5 per group is within the 10% tolerance: 4."
    )


def test_the_p95_guard_above_its_objective_asks_for_one_more_than_the_ready_units() -> None:
    chosen = policy(MetricTarget("inflight", 5.0), MetricTarget("ttft_p95", 0.5))
    decision = autoscale(chosen, Signals(units=units(3, inflight=4.0, ttft_p95=0.9)), 0.0, History())
    assert decision.recommendations == {"inflight": 3, "ttft_p95": 4}
    assert decision.desired == 4
    assert decision.reason.startswith(
        "ttft_p95 0.9 s is over the objective 0.5 s: one more than the 3 ready groups"
    )


def test_the_p95_guard_within_its_objective_asks_for_nothing_and_never_lowers() -> None:
    chosen = policy(MetricTarget("inflight", 5.0), MetricTarget("itl_p95", 0.05))
    decision = autoscale(chosen, Signals(units=units(4, inflight=2.5, itl_p95=0.01)), 0.0, History())
    assert decision.recommendations == {"inflight": 2, "itl_p95": 0}
    assert decision.desired == 2


def test_the_p95_guard_waits_for_a_unit_that_is_already_starting() -> None:
    chosen = policy(MetricTarget("ttft_p95", 0.5))
    signals = Signals(units=(*units(3, ttft_p95=2.0), *pending(1, since=0.0)))
    decision = autoscale(chosen, signals, 10.0, History())
    assert decision.recommendations == {"ttft_p95": 4}
    assert decision.desired == 4


def test_a_guard_with_no_data_has_no_figure() -> None:
    chosen = policy(MetricTarget("inflight", 5.0), MetricTarget("ttft_p95", 0.5))
    assert autoscale(chosen, Signals(units=units(2, inflight=5.0)), 0.0, History()).recommendations == {
        "inflight": 2
    }


def test_the_highest_recommendation_wins_and_every_figure_is_shown() -> None:
    chosen = policy(
        MetricTarget("inflight", 5.0), MetricTarget("kv_usage", 0.5), MetricTarget("running", 8.0)
    )
    signals = Signals(units=units(2, inflight=1.0, kv_usage=0.9, running=8.0))
    decision = autoscale(chosen, signals, 0.0, History())
    assert decision.recommendations == {"inflight": 1, "kv_usage": 4, "running": 2}
    assert decision.desired == 4
    assert decision.reason.startswith("kv_usage 0.9 on average over 2 ready groups")


def test_the_unit_is_named_as_the_policy_says() -> None:
    chosen = policy(MetricTarget("prefill_queued_tokens", 4000.0), unit="prefill instance")
    signals = Signals(units=units(2, prefill_queued_tokens=9000.0))
    decision = autoscale(chosen, signals, 0.0, History())
    assert decision.reason.startswith(
        "prefill_queued_tokens 18000 over 2 prefill instances at target 4000 per prefill instance asks for 5"
    )


@pytest.mark.parametrize(
    ("up", "down", "current", "expected"),
    [
        (6.0, 6.0, 4, (6, False)),
        (4.3, 4.3, 4, (4, True)),
        (3.7, 3.7, 4, (4, False)),  # ceil(3.7) is 4: no move
        (1.2, 3.2, 4, (4, False)),  # unknowns at target keep 4
        (0.6, 1.6, 4, (2, False)),
        (2.5, 2.5, 0, (3, False)),  # at zero there is no ratio to hold
        (0.0, 0.0, 0, (0, False)),
    ],
)
def test_ratio_rule(up: float, down: float, current: int, expected: tuple[int, bool]) -> None:
    assert ratio_rule(up, down, current, 0.10) == expected
