"""Prefill and decode: each decided on its own, through zero together, inside the ratio band."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from phalanx.autoscale.roles import autoscale_roles, enforce_band, in_band
from phalanx.autoscale.types import (
    Decision,
    History,
    MetricTarget,
    RatioBand,
    RolePolicies,
    Signals,
    StepLimit,
)
from tests.unit.autoscale.core_builders import policy, units

PREFILL = policy(
    MetricTarget("prefill_queued_tokens", 4000.0), MetricTarget("ttft_p95", 1.0), unit="prefill instance"
)
DECODE = policy(MetricTarget("kv_usage", 0.7), MetricTarget("itl_p95", 0.05), unit="decode instance")
BAND = RatioBand("prefill", "decode", 0.25, 1.0)


def roles(band: RatioBand | None = BAND, **bounds: tuple[int, int]) -> RolePolicies:
    chosen = {"prefill": PREFILL, "decode": DECODE}
    for role, (low, high) in bounds.items():
        chosen[role] = dataclasses.replace(chosen[role], min_replicas=low, max_replicas=high)
    return RolePolicies(roles=chosen, ratio=band)


def signals(prefill: Signals, decode: Signals) -> dict[str, Signals]:
    return {"prefill": prefill, "decode": decode}


def desired(decisions: Mapping[str, Decision]) -> dict[str, int]:
    return {role: d.desired for role, d in decisions.items()}


def test_each_role_decides_on_its_own_signals() -> None:
    given = signals(
        Signals(units=units(2, prefill_queued_tokens=8000.0)), Signals(units=units(4, kv_usage=0.7))
    )
    decisions = autoscale_roles(roles(), given, 0.0, {})
    assert desired(decisions) == {"prefill": 4, "decode": 4}
    assert decisions["prefill"].recommendations == {"prefill_queued_tokens": 4}
    assert decisions["prefill"].reason.startswith("prefill_queued_tokens 16000 over 2 prefill instances")


def test_the_lagging_role_is_raised_into_the_band() -> None:
    given = signals(Signals(units=units(1, prefill_queued_tokens=0.0)), Signals(units=units(4, kv_usage=1.4)))
    decisions = autoscale_roles(roles(), given, 0.0, {})
    assert desired(decisions) == {"prefill": 2, "decode": 8}  # decode asks for 8; 1:8 is under 0.25
    assert decisions["prefill"].reason.endswith("; prefill raised to 2 to keep prefill:decode within 0.25-1.")
    assert decisions["prefill"].history.records[-1].desired == 2
    assert decisions["decode"].reason.endswith("asks for 8.")


def test_the_denominator_is_raised_when_the_numerator_runs_ahead() -> None:
    given = signals(
        Signals(units=units(2, prefill_queued_tokens=12000.0)), Signals(units=units(2, kv_usage=0.35))
    )
    assert desired(autoscale_roles(roles(), given, 0.0, {})) == {"prefill": 6, "decode": 6}


def test_when_its_max_prevents_it_the_other_role_is_lowered_to_the_band() -> None:
    given = signals(Signals(units=units(1, prefill_queued_tokens=0.0)), Signals(units=units(4, kv_usage=1.4)))
    decisions = autoscale_roles(roles(prefill=(1, 1)), given, 0.0, {})
    assert desired(decisions) == {"prefill": 1, "decode": 4}
    assert decisions["decode"].reason.endswith(
        "prefill is at its maximum 1, so decode lowered to 4 to keep prefill:decode within 0.25-1."
    )


def test_when_the_bounds_allow_nothing_inside_the_band_a_warning_says_so() -> None:
    given = signals(Signals(units=units(1, prefill_queued_tokens=0.0)), Signals(units=units(8, kv_usage=0.7)))
    decisions = autoscale_roles(roles(prefill=(1, 1), decode=(8, 8)), given, 0.0, {})
    assert desired(decisions) == {"prefill": 1, "decode": 8}
    (event,) = decisions["prefill"].events
    assert (event.type, event.reason) == ("Warning", "RatioOutOfBand")
    assert (
        event.message
        == "prefill:decode stays outside 0.25-1: the roles' min and max allow no count inside it"
    )
    assert decisions["decode"].reason.endswith(f"; {event.message}.")


def test_roles_come_back_from_zero_together() -> None:
    given = signals(Signals(units=(), admission_queue=3), Signals(units=()))
    decisions = autoscale_roles(roles(), given, 0.0, {})
    assert desired(decisions) == {"prefill": 1, "decode": 1}
    assert "raised to 1: another role runs, and one role alone serves nothing" in decisions["decode"].reason


def test_one_idle_role_is_kept_while_the_other_runs_and_both_go_to_zero_together() -> None:
    now_free = StepLimit(instances=100, period=0.0, stabilization_window=0.0)
    chosen = RolePolicies(
        roles={
            "prefill": policy(MetricTarget("prefill_queued_tokens", 4000.0), scale_down=now_free),
            "decode": policy(MetricTarget("running", 8.0), scale_down=now_free),
        }
    )
    busy = signals(Signals(units=units(1, prefill_queued_tokens=0.0)), Signals(units=units(1, running=4.0)))
    idle = signals(Signals(units=units(1, prefill_queued_tokens=0.0)), Signals(units=units(1, running=0.0)))
    assert desired(autoscale_roles(chosen, busy, 0.0, {})) == {"prefill": 1, "decode": 1}
    assert desired(autoscale_roles(chosen, idle, 0.0, {})) == {"prefill": 0, "decode": 0}


def test_histories_are_kept_per_role() -> None:
    given = signals(
        Signals(units=units(2, prefill_queued_tokens=8000.0)), Signals(units=units(4, kv_usage=0.7))
    )
    first = autoscale_roles(roles(), given, 0.0, {})
    history = {role: d.history for role, d in first.items()}
    second = autoscale_roles(roles(), given, 15.0, history)
    assert second["prefill"].history.recommendations[-2:] == (
        first["prefill"].history.recommendations[-1],
        second["prefill"].history.recommendations[-1],
    )
    assert second["decode"].history.recommendations[-1].replicas == 4


def test_a_role_with_no_signals_or_history_yet_starts_from_nothing() -> None:
    decisions = autoscale_roles(roles(), {}, 0.0, {})
    assert desired(decisions) == {"prefill": 0, "decode": 0}
    assert decisions["decode"].history.records == History().records


@pytest.mark.parametrize(
    ("counts", "bounds", "expected"),
    [
        ({"p": 2, "d": 4}, {"p": (0, 10), "d": (0, 10)}, {"p": 2, "d": 4}),  # within
        ({"p": 1, "d": 8}, {"p": (0, 10), "d": (0, 10)}, {"p": 2, "d": 8}),  # numerator raised
        ({"p": 6, "d": 2}, {"p": (0, 10), "d": (0, 10)}, {"p": 6, "d": 6}),  # denominator raised
        (
            {"p": 1, "d": 8},
            {"p": (0, 1), "d": (0, 10)},
            {"p": 1, "d": 4},
        ),  # numerator at max: denominator lowered
        (
            {"p": 6, "d": 2},
            {"p": (0, 10), "d": (0, 3)},
            {"p": 3, "d": 3},
        ),  # denominator at max: numerator lowered
        ({"p": 0, "d": 0}, {"p": (0, 10), "d": (0, 10)}, {"p": 0, "d": 0}),  # together at zero
        ({"p": 1, "d": 8}, {"p": (0, 1), "d": (6, 10)}, {"p": 1, "d": 6}),  # the min stops the lowering
        ({"p": 1, "d": 3}, {"p": (0, 10), "d": (0, 10)}, {"p": 1, "d": 3}),  # 1/3 is inside 0.25
    ],
)
def test_enforce_band(
    counts: dict[str, int], bounds: dict[str, tuple[int, int]], expected: dict[str, int]
) -> None:
    policies = {r: policy(min_replicas=low, max_replicas=high) for r, (low, high) in bounds.items()}
    result, _ = enforce_band(counts, policies, RatioBand("p", "d", 0.25, 1.0))
    assert result == expected


def test_a_band_edge_counts_as_inside() -> None:
    band = RatioBand("p", "d", 1 / 3, 0.5)
    assert in_band(1, 3, band)
    assert in_band(1, 2, band)
    assert not in_band(1, 4, band)
    assert not in_band(1, 0, band)
    assert in_band(0, 0, band)


def test_lowering_for_the_band_never_takes_a_role_to_zero_while_the_other_runs() -> None:
    policies = {"p": policy(max_replicas=10), "d": policy(max_replicas=1)}
    result, note = enforce_band({"p": 3, "d": 1}, policies, RatioBand("p", "d", 0.25, 0.5))
    assert result == {"p": 1, "d": 1}  # 0.5 x 1 decode would allow no prefill at all
    assert note == "p:d stays outside 0.25-0.5: the roles' min and max allow no count inside it"


def test_an_observe_only_role_keeps_saying_so_after_the_band_moved_it() -> None:
    observed = RolePolicies(
        roles={"prefill": dataclasses.replace(PREFILL, observe_only=True), "decode": DECODE}, ratio=BAND
    )
    given = signals(Signals(units=units(1, prefill_queued_tokens=0.0)), Signals(units=units(4, kv_usage=1.4)))
    reason = autoscale_roles(observed, given, 0.0, {})["prefill"].reason
    assert reason.endswith(
        "; prefill raised to 2 to keep prefill:decode within 0.25-1 (observe only: not applied)."
    )
