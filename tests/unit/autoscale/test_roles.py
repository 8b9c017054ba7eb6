"""Prefill and decode: each decided on its own, through zero together, inside the ratio band, and
the new units of both split over the room they share."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from phalanx.autoscale.placement import Fits
from phalanx.autoscale.roles import autoscale_roles, enforce_band, fill, in_band, one_more
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


def gpus(free: int, **per_unit: int) -> Fits:
    """A room of `free` GPUs, each role's unit taking `per_unit[role]` of them."""
    return lambda more: sum(count * per_unit[role] for role, count in more.items()) <= free


ASKS = {"prefill": 2, "decode": 4}  # on top of 2 and 2 running: 4:6 asked, inside 0.5-1
SAME = {"prefill": 1, "decode": 1}


@pytest.mark.parametrize(
    ("asks", "bases", "room", "band", "expected"),
    [
        (ASKS, {"prefill": 2, "decode": 2}, gpus(6, **SAME), None, ASKS),  # room for both
        (
            ASKS,
            {"prefill": 2, "decode": 2},
            gpus(3, **SAME),
            None,
            {"prefill": 1, "decode": 2},
        ),  # in proportion
        (
            ASKS,
            {"prefill": 2, "decode": 2},
            gpus(0, **SAME),
            None,
            {"prefill": 0, "decode": 0},
        ),  # for neither
        # Room for one role's ask alone: still split, the larger ask first on a tie.
        (ASKS, {"prefill": 2, "decode": 2}, gpus(4, **SAME), None, {"prefill": 1, "decode": 3}),
        # Units of different sizes: once a decode unit (4 GPUs) no longer fits, prefill (1) goes on.
        (
            {"prefill": 4, "decode": 2},
            {"prefill": 1, "decode": 1},
            gpus(7, prefill=1, decode=4),
            None,
            {"prefill": 3, "decode": 1},
        ),
        # The same without a band would give prefill 3 and decode 2 (4:3); the band stops at 3:3.
        (
            {"prefill": 5, "decode": 5},
            {"prefill": 1, "decode": 1},
            gpus(11, prefill=1, decode=4),
            RatioBand("prefill", "decode", 0.5, 1.0),
            {"prefill": 2, "decode": 2},
        ),
        # A band of exactly 1:1 moves both roles a unit each.
        (
            {"prefill": 3, "decode": 3},
            {"prefill": 1, "decode": 1},
            gpus(5, **SAME),
            RatioBand("prefill", "decode", 1.0, 1.0),
            {"prefill": 2, "decode": 2},
        ),
        # A role at its max asks for nothing: the other takes the room.
        (
            {"prefill": 3, "decode": 0},
            {"prefill": 1, "decode": 4},
            gpus(2, **SAME),
            BAND,
            {"prefill": 2, "decode": 0},
        ),
        # From zero: one role alone serves nothing, so with room for one unit neither starts.
        (
            {"prefill": 1, "decode": 1},
            {"prefill": 0, "decode": 0},
            gpus(1, **SAME),
            None,
            {"prefill": 0, "decode": 0},
        ),
        ({"prefill": 1, "decode": 1}, {"prefill": 0, "decode": 0}, gpus(2, **SAME), None, SAME),
    ],
)
def test_the_roles_new_units_share_one_room(
    asks: dict[str, int], bases: dict[str, int], room: Fits, band: RatioBand | None, expected: dict[str, int]
) -> None:
    assert fill(asks, bases, room, band) == expected


def growing() -> dict[str, Signals]:
    """Prefill 2 -> 4 and decode 4 -> 8 asked, 4:8 inside the band."""
    return signals(
        Signals(units=units(2, prefill_queued_tokens=8000.0)),
        Signals(units=units(4, kv_usage=1.4), placeable=10),  # decode's own figure alone: all of the room
    )


def test_with_room_for_both_roles_the_decisions_are_untouched() -> None:
    alone = autoscale_roles(roles(), growing(), 0.0, {})
    together = autoscale_roles(roles(), growing(), 0.0, {}, gpus(6, **SAME))
    assert together == alone
    assert desired(together) == {"prefill": 4, "decode": 8}


def test_when_the_room_holds_less_both_roles_get_their_share_and_say_so() -> None:
    decisions = autoscale_roles(roles(), growing(), 0.0, {}, gpus(5, prefill=2, decode=1))
    # 2 prefill GPUs each: prefill 1 of 2 and decode 3 of 4 (2 + 3 = 5 GPUs); 3:7 inside 0.25-1.
    assert desired(decisions) == {"prefill": 3, "decode": 7}
    clause = (
        "the free room holds 4 of the 6 new units the roles ask for together (decode 3 of 4, "
        "prefill 1 of 2), split in proportion to the asks, keeping prefill:decode within 0.25-1."
    )
    assert decisions["prefill"].reason.endswith(clause)
    assert decisions["decode"].reason.endswith(clause)
    assert decisions["decode"].history.records[-1].desired == 7
    assert decisions["decode"].history.last_scale_up == 0.0


def test_with_no_room_both_roles_keep_their_counts_and_a_role_at_its_minimum_stays_there() -> None:
    decisions = autoscale_roles(roles(prefill=(3, 20)), growing(), 0.0, {}, gpus(0, **SAME))
    assert desired(decisions) == {"prefill": 3, "decode": 4}  # as the core: the minimum wins
    assert "holds 0 of the 5 new units the roles ask for together (decode 0 of 4, prefill 0 of 1)" in (
        decisions["decode"].reason
    )
    # The instance the minimum asks for takes its room first; the other 2 GPUs are split.
    decisions = autoscale_roles(roles(prefill=(3, 20)), growing(), 0.0, {}, gpus(3, **SAME))
    assert desired(decisions) == {"prefill": 4, "decode": 5}


def test_a_role_scaling_down_frees_no_room_and_is_left_alone() -> None:
    given = signals(
        Signals(units=units(4, prefill_queued_tokens=2000.0)), Signals(units=units(4, kv_usage=1.4))
    )
    decisions = autoscale_roles(roles(), given, 0.0, {}, gpus(2, **SAME))
    assert desired(decisions) == {"prefill": 2, "decode": 6}  # decode 2 of 4; 2:6 inside 0.25-1
    assert "free room" not in decisions["prefill"].reason


@settings(max_examples=400, deadline=None)
@given(
    asks=st.tuples(st.integers(0, 8), st.integers(0, 8)),
    bases=st.tuples(st.integers(0, 8), st.integers(0, 8)),
    sizes=st.tuples(st.integers(0, 4), st.integers(1, 4)),
    free=st.integers(0, 30),
    edges=st.none() | st.tuples(st.sampled_from([0.25, 0.5, 1.0]), st.sampled_from([1.0, 1.5, 2.0, 4.0])),
)
def test_the_split_fits_stays_within_the_asks_and_the_band_and_leaves_no_step_that_fits(
    asks: tuple[int, int],
    bases: tuple[int, int],
    sizes: tuple[int, int],
    free: int,
    edges: tuple[float, float] | None,
) -> None:
    band = RatioBand("prefill", "decode", *edges) if edges is not None else None
    asked, base = (
        dict(zip(("prefill", "decode"), asks, strict=True)),
        dict(zip(("prefill", "decode"), bases, strict=True)),
    )
    room = gpus(free, prefill=sizes[0], decode=sizes[1])
    if band is not None:
        assume(in_band(base["prefill"], base["decode"], band))
    grant = fill(asked, base, room, band)
    assert room(grant)
    assert all(0 <= grant[r] <= asked[r] for r in grant)
    total = {r: base[r] + grant[r] for r in grant}
    if band is not None:
        assert in_band(total["prefill"], total["decode"], band)
    if not any(base.values()) and any(total.values()):
        assert all(total[r] > 0 or asked[r] == 0 for r in total)  # no role alone from zero
    for role in grant:  # nothing left that one more step could place
        more = one_more(grant, role, asked, base, band) if grant[role] < asked[role] else None
        assert more is None or not room(more)
