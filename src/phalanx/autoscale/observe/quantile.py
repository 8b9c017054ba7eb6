"""A quantile from cumulative histogram bucket counts, the way Prometheus' `histogram_quantile`
computes it: linear interpolation inside the bucket that holds the rank."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """`buckets` maps each upper bound (`le`, +Inf included) to the cumulative count at it. None
    when nothing was observed or the counts are not a histogram (no +Inf bucket, decreasing)."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    counts = [buckets[b] for b in bounds]
    if any(later < earlier for earlier, later in itertools.pairwise(counts)) or counts[0] < 0:
        return None
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(bounds) - 1:
        # Above the highest finite bound: that bound is all a histogram can say.
        return bounds[-2] if len(bounds) > 1 else None
    upper = bounds[index]
    lower = bounds[index - 1] if index > 0 else 0.0
    if index == 0 and upper <= 0:
        return upper
    below = counts[index - 1] if index > 0 else 0.0
    return lower + (upper - lower) * (rank - below) / (counts[index] - below)
