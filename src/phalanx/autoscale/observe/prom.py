"""Prometheus text into plain samples, and the series key a snapshot stores them under."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_page(text: str) -> tuple[Sample, ...] | None:
    """Every finite sample on the page; None when it is not Prometheus text (an unreadable page
    is unknown, never idle)."""
    try:
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    return tuple(Sample(s.name, dict(s.labels), s.value) for s in samples if math.isfinite(s.value))


def series_key(sample: Sample) -> str:
    """The sample's name and labels in one string, labels sorted: stable across scrapes."""
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}}"


def first_present(samples: Sequence[Sample], candidates: tuple[str, ...]) -> str | None:
    """The first of `candidates` (sample names, in order of preference) that the page has."""
    names = {s.name for s in samples}
    return next((name for name in candidates if name in names), None)
