"""The router's `/metrics` page into what it knows of one target (a model): requests in flight per
unit, requests waiting for an endpoint slot, and requests held while the target has no unit.

Endpoints are the router's names for entry pods; the caller maps them to units (a unit is one
endpoint, or several when it has more than one entry). The slot queue
(`phalanx_router_queue_depth`) is labelled by priority, not by model: it belongs to this target
only when the page labels it by model or the caller says the router serves this target alone;
otherwise it is unknown, never guessed from other models' requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.autoscale.observe.prom import Sample, parse_page

IN_FLIGHT = "phalanx_router_in_flight_requests"
QUEUE_DEPTH = "phalanx_router_queue_depth"
# Requests held with no endpoint (zero units): the router's name for it was not settled when this
# was written, so callers may pass another.
HELD = "phalanx_router_held_requests"


@dataclass(frozen=True)
class RouterFigures:
    """One target as the router saw it; None: the page did not say."""

    # Unit name -> requests proxied to its endpoints; a unit with none of its endpoints on the
    # page (the router has not discovered it yet) is absent.
    inflight: Mapping[str, float] = field(default_factory=dict)
    # Requests waiting for a slot on one of the target's endpoints.
    queue: float | None = None
    # Requests held while the target has no endpoint at all.
    held: float | None = None


def read_router(
    text: str,
    *,
    model: str,
    endpoints: Mapping[str, str],
    sole_target: bool = False,
    held_metric: str = HELD,
) -> RouterFigures | None:
    """The router's figures for `model`; `endpoints` maps endpoint name -> unit name, and
    `sole_target` says this router serves no other model. None when the page is unreadable."""
    samples = parse_page(text)
    if samples is None:
        return None
    inflight: dict[str, float] = {}
    for sample in samples:
        unit = endpoints.get(sample.labels.get("endpoint", ""))
        if sample.name == IN_FLIGHT and unit is not None:
            inflight[unit] = inflight.get(unit, 0.0) + max(sample.value, 0.0)
    return RouterFigures(
        inflight=inflight,
        queue=_for_model(samples, QUEUE_DEPTH, model, sole_target),
        held=_for_model(samples, held_metric, model, sole_target),
    )


def _for_model(samples: Sequence[Sample], name: str, model: str, sole_target: bool) -> float | None:
    """The sum of `name` over the model's series: those labelled with it, or every series when
    they carry no model label and the router serves this target alone."""
    series = [s for s in samples if s.name == name]
    if not series:
        return None
    if all("model" in s.labels for s in series):
        return sum(max(s.value, 0.0) for s in series if s.labels["model"] == model)
    if sole_target:
        return sum(max(s.value, 0.0) for s in series)
    return None
