"""The arrival rate a growing backlog shows without the router's rate window's lag: only while
every ready unit is saturated, and only beyond the arrivals' noise."""

from __future__ import annotations

import pytest

from phalanx.autoscale.backlog import seen_arrivals
from phalanx.autoscale.core import autoscale
from phalanx.autoscale.types import History, Signals, UnitSignals
from tests.unit.autoscale.core_builders import pending, policy, units


def busy(count: int, waiting: float, **values: float) -> tuple[UnitSignals, ...]:
    """Ready units with requests waiting and a measured rate: saturated."""
    return units(count, waiting=waiting, tokens_per_second=2500.0, **values)


def test_the_backlog_growth_plus_what_the_saturated_units_serve_is_the_arrival_rate() -> None:
    # 0 -> 120 requests in 15 s is 8 a second beyond what 2 units serve at 2.5 each: 13 a second.
    seen = seen_arrivals((0.0, 0.0), 120.0, busy(2, 60.0), 15.0, 5.0, 2.5)
    assert seen == pytest.approx(13.0)


def test_a_growth_twice_the_noise_shows_the_rate() -> None:
    # 25 requests in 15 s at 7 a second: over 2 x sqrt(7 x 15) = 20.5, so 25 / 15 + 2.5 arrive.
    seen = seen_arrivals((0.0, 0.0), 25.0, busy(1, 25.0), 15.0, 7.0, 2.5)
    assert seen == pytest.approx(25.0 / 15.0 + 2.5)


def test_units_still_starting_do_not_block_the_view() -> None:
    live = (*busy(2, 60.0), *pending(3, since=0.0))
    assert seen_arrivals((0.0, 0.0), 120.0, live, 15.0, 5.0, 2.5) == pytest.approx(13.0)


@pytest.mark.parametrize(
    ("previous", "backlog", "live", "now"),
    [
        # No backlog seen at the last pass (the first pass, or a restart from an older status).
        (None, 120.0, busy(2, 60.0), 15.0),
        # One ready unit has nothing waiting: it serves less than its capacity.
        (
            (0.0, 0.0),
            120.0,
            (*busy(1, 120.0), UnitSignals("g9", True, waiting=0.0, tokens_per_second=900.0)),
            15.0,
        ),
        # Nothing ready.
        ((0.0, 0.0), 120.0, pending(2, since=0.0), 15.0),
        # Azure's brief queue: 6 requests in 15 s at 7 a second, under 2 x sqrt(7 x 15) = 20.5.
        ((0.0, 0.0), 6.0, busy(3, 2.0), 15.0),
        # A shrinking backlog shows nothing about a rise.
        ((0.0, 200.0), 120.0, busy(2, 60.0), 15.0),
        # No time between the passes.
        ((15.0, 0.0), 120.0, busy(2, 60.0), 15.0),
    ],
)
def test_no_rate_is_seen_unless_every_ready_unit_is_saturated_and_the_growth_beyond_noise(
    previous: tuple[float, float] | None, backlog: float, live: tuple[UnitSignals, ...], now: float
) -> None:
    assert seen_arrivals(previous, backlog, live, now, 7.0, 2.5) is None


def step(waiting: float) -> Signals:
    """A step seen a quarter through the router's window: 4 requests/s of 1500 tokens (6000
    tokens/s) on 2 saturated units."""
    return Signals(
        units=busy(2, waiting),
        demand_tokens_per_second=6000.0,
        demand_requests_per_second=4.0,
    )


def test_a_step_is_planned_at_the_rate_the_backlog_shows() -> None:
    # A unit serves 3000 tokens/s, 2 requests/s of 1500 tokens. 0 -> 120 requests in 15 s: 8 a
    # second more than the 4 the 2 units serve, 12 arrive. The floor plans 12 x 1500 / (3000 x
    # 0.9) = 6.7 units: 7; the router's 4 requests/s alone plan 2.2: 3.
    chosen = policy(capacity_utilization=0.9)
    known = History(capacity_per_unit=3000.0, backlog=(0.0, 0.0))
    decision = autoscale(chosen, step(60.0), 15.0, known)
    assert decision.recommendations["capacity"] == 7
    assert (
        "the backlog grew from 0 to 120 requests in 15 s with every ready unit saturated: requests "
        "arrive at 12/s, not the 4/s of the router's rate window" in decision.reason
    )
    lagging = autoscale(chosen, step(60.0), 15.0, History(capacity_per_unit=3000.0))
    assert lagging.recommendations["capacity"] == 3
    assert "the backlog grew" not in lagging.reason


def test_the_pass_keeps_its_backlog_and_the_routers_rate_in_the_history() -> None:
    decision = autoscale(policy(), step(60.0), 15.0, History(capacity_per_unit=3000.0, backlog=(0.0, 0.0)))
    assert decision.history.backlog == (15.0, 120.0)
    # The trend is the router's rate's: the seen rate replaces it for this pass only.
    assert decision.history.demand == ((15.0, 4.0),)


def test_a_seen_rate_under_the_routers_rate_and_its_rise_changes_nothing() -> None:
    # 0 -> 45 requests in 15 s: 3 a second beyond the 4 served is 7 arriving; the router's rate
    # rose from 0 to 4 in the last minute, forecast at 4 more within the 150 s startup: 8.
    rising = ((15.0, 0.0),)
    history = History(capacity_per_unit=3000.0, backlog=(60.0, 0.0), startup=150.0, demand=rising)
    assert seen_arrivals(history.backlog, 45.0, busy(2, 22.5), 75.0, 4.0, 2.0) == pytest.approx(7.0)
    decision = autoscale(policy(), step(22.5), 75.0, history)
    plain = autoscale(
        policy(), step(22.5), 75.0, History(capacity_per_unit=3000.0, startup=150.0, demand=rising)
    )
    assert "the backlog grew" not in decision.reason
    assert decision.recommendations == plain.recommendations
    # The floor plans the forecast's 8 requests/s: 8 x 1500 / (3000 x 0.9) = 4.4 units: 5.
    assert decision.recommendations["capacity"] == 5
