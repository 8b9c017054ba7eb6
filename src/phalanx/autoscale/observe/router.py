"""The router's `/metrics` page into what it knows of one target (a model): requests in flight per
unit, requests waiting for an endpoint slot, requests held while the target has no unit, and the
requests and prompt tokens arriving per second.

Endpoints are the router's names for entry pods; the caller maps them to units (a unit is one
endpoint, or several when it has more than one entry). The queue depth
(`phalanx_router_queue_depth`) is labelled by priority, not by model: it belongs to this target
only when the page labels it by model or the caller says the router serves this target alone;
otherwise it is unknown, never guessed from other models' requests. Held requests wait in the same
queue, so they are taken out of it and reported on their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.autoscale.observe.prom import Sample, parse_page, series_key
from phalanx.autoscale.observe.snapshot import PageSnapshot, growth

IN_FLIGHT = "phalanx_router_in_flight_requests"
QUEUE_DEPTH = "phalanx_router_queue_depth"
# Requests waiting for a model that no routable endpoint serves (zero units, or the first starting).
HELD = "phalanx_router_held_requests"
# Requests for a model and their prompt tokens (the router's estimate), counted on arrival.
ARRIVALS = "phalanx_router_arrivals_total"
ARRIVAL_PROMPT_TOKENS = "phalanx_router_arrival_prompt_tokens_total"


@dataclass(frozen=True)
class RouterFigures:
    """One target as the router saw it; None: the page did not say."""

    # Unit name -> requests proxied to its endpoints; a unit with none of its endpoints on the
    # page (the router has not discovered it yet) is absent.
    inflight: Mapping[str, float] = field(default_factory=dict)
    # Requests waiting for a slot on one of the target's endpoints (held ones not included).
    queue: float | None = None
    # Requests waiting while no routable endpoint serves the target.
    held: float | None = None
    # Requests and prompt tokens arriving per second over the window since the previous page.
    arrivals_per_second: float | None = None
    arrival_prompt_tokens_per_second: float | None = None


@dataclass(frozen=True)
class RouterMetricNames:
    in_flight: str = IN_FLIGHT
    queue_depth: str = QUEUE_DEPTH
    held: str = HELD
    arrivals: str = ARRIVALS
    arrival_prompt_tokens: str = ARRIVAL_PROMPT_TOKENS


DEFAULT_ROUTER_NAMES = RouterMetricNames()


def read_router(
    text: str,
    previous: PageSnapshot | None,
    now: float,
    *,
    model: str,
    endpoints: Mapping[str, str],
    sole_target: bool = False,
    names: RouterMetricNames = DEFAULT_ROUTER_NAMES,
) -> tuple[RouterFigures | None, PageSnapshot | None]:
    """The router's figures for `model` read at `now`, and the snapshot to pass next time;
    `endpoints` maps endpoint name -> unit name, `sole_target` says this router serves no other
    model. An unreadable page gives None and keeps `previous`."""
    samples = parse_page(text)
    if samples is None:
        return None, previous
    inflight: dict[str, float] = {}
    for sample in samples:
        unit = endpoints.get(sample.labels.get("endpoint", ""))
        if sample.name == names.in_flight and unit is not None:
            inflight[unit] = inflight.get(unit, 0.0) + max(sample.value, 0.0)
    held = _for_model(samples, names.held, model, sole_target)
    queue = _for_model(samples, names.queue_depth, model, sole_target)
    if queue is not None and held is not None:
        queue = max(queue - held, 0.0)
    counters = (names.arrivals, names.arrival_prompt_tokens)
    arrivals = [s for s in samples if s.name in counters and s.labels.get("model") == model]
    snapshot = PageSnapshot(now, {series_key(s): s.value for s in arrivals}) if arrivals else None
    deltas = growth(previous, snapshot) if snapshot is not None else None

    def per_second(name: str) -> float | None:
        if previous is None or deltas is None or not any(s.name == name for s in arrivals):
            return None
        return sum(deltas[series_key(s)] for s in arrivals if s.name == name) / (now - previous.time)

    figures = RouterFigures(
        inflight=inflight,
        queue=queue,
        held=held,
        arrivals_per_second=per_second(names.arrivals),
        arrival_prompt_tokens_per_second=per_second(names.arrival_prompt_tokens),
    )
    return figures, snapshot


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
