"""p95 from cumulative bucket counts, as Prometheus' histogram_quantile computes it: checked by hand."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.autoscale.observe.quantile import histogram_quantile

INF = math.inf


def test_interpolates_inside_the_bucket_that_holds_the_rank() -> None:
    # 100 observations; rank 95 falls in (0.25, 0.5], which holds 90..100: 0.25 + 0.25 * 5/10.
    assert histogram_quantile(0.95, {0.1: 50, 0.25: 90, 0.5: 100, INF: 100}) == pytest.approx(0.375)


def test_a_rank_on_a_bucket_edge_is_that_bucket_s_bound() -> None:
    assert histogram_quantile(0.95, {0.1: 10, 0.5: 60, 1.0: 95, INF: 100}) == pytest.approx(1.0)


def test_the_first_bucket_interpolates_from_zero() -> None:
    assert histogram_quantile(0.95, {0.1: 100, 1.0: 100, INF: 100}) == pytest.approx(0.095)


def test_a_rank_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    # Prometheus' rule: the histogram cannot say more than "above 0.1".
    assert histogram_quantile(0.95, {0.05: 3, 0.1: 10, INF: 100}) == 0.1


def test_buckets_need_not_come_sorted() -> None:
    assert histogram_quantile(0.5, {INF: 4, 2.0: 4, 1.0: 2}) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "buckets",
    [
        {},  # nothing at all
        {0.1: 0, 1.0: 0, INF: 0},  # no observation in the window
        {0.1: 5, 1.0: 10},  # no +Inf bucket: not a whole histogram
        {0.1: 5, 1.0: 3, INF: 10},  # decreasing: not cumulative
        {0.1: -1, INF: 2},  # a negative count
        {INF: 7},  # only +Inf: no bound to report
    ],
)
def test_no_quantile_without_a_usable_histogram(buckets: dict[float, float]) -> None:
    assert histogram_quantile(0.95, buckets) is None


def test_a_bound_at_or_below_zero_is_returned_as_is() -> None:
    assert histogram_quantile(0.5, {0.0: 4, 1.0: 4, INF: 4}) == 0.0


@given(
    counts=st.lists(st.integers(min_value=0, max_value=50), min_size=2, max_size=8),
    q=st.floats(min_value=0.01, max_value=0.99),
)
def test_quantiles_grow_with_q_and_stay_within_the_bounds(counts: list[int], q: float) -> None:
    bounds = [0.01 * 2**i for i in range(len(counts) - 1)]
    cumulative = list(itertools.accumulate(counts))
    buckets = dict(zip([*bounds, INF], cumulative, strict=True))
    low, high = histogram_quantile(q, buckets), histogram_quantile(min(q + 0.01, 1.0), buckets)
    if cumulative[-1] == 0:
        assert low is None
        return
    assert low is not None and high is not None
    assert 0.0 <= low <= high <= bounds[-1]
