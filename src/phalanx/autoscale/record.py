"""The history the core keeps between passes, bounded so that it fits in the target's status."""

from __future__ import annotations

from collections.abc import Sequence

from phalanx.autoscale.types import DecisionRecord, Recommendation


def prune_recommendations(
    recommendations: Sequence[Recommendation], now: float, keep: float
) -> tuple[Recommendation, ...]:
    """Recommendations of the last `keep` seconds, and the newest older one: the value in force
    when that span began, which the scale-to-zero rule needs to know the span is covered."""
    start = now - keep
    older = [r for r in recommendations if r.time < start]
    recent = [r for r in recommendations if r.time >= start]
    return tuple(older[-1:] + recent)


def append_record(
    records: Sequence[DecisionRecord], record: DecisionRecord, limit: int
) -> tuple[DecisionRecord, ...]:
    """A record for each change of count or of mode (a steady target does not flush its history
    with passes that changed nothing), and not again for the same change while it is not in effect
    (observe-only: every pass decides the same move from the same count); the newest `limit` are
    kept."""
    last = records[-1] if records else None
    last_mode = last.mode if last is not None else "Stable"
    kept = tuple(records)
    repeated = last is not None and (last.previous, last.desired, last.mode) == (
        record.previous,
        record.desired,
        record.mode,
    )
    if (record.desired != record.previous or record.mode != last_mode) and not repeated:
        kept = (*kept, record)
    return kept[len(kept) - limit :] if 0 < limit < len(kept) else kept if limit > 0 else ()
