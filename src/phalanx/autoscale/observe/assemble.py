"""One pass's `Signals` from what the runtime knows of the units, their engines' fields and the
router's figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from phalanx.autoscale.observe.engine import UNKNOWN, UnitFields
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.types import Signals, UnitSignals


@dataclass(frozen=True)
class UnitState:
    """A unit as the runtime sees it: every unit that exists, pending and draining ones included."""

    name: str
    ready: bool
    draining: bool = False
    pending_since: float | None = None  # created and not yet ready since this time


def build_signals(
    units: Sequence[UnitState],
    engines: Mapping[str, UnitFields],
    router: RouterFigures | None,
    *,
    placeable: int | None = None,
    demand_tokens_per_second: float | None = None,
) -> Signals:
    """`engines` maps unit name -> the fields its entry pod's page gave this pass (a unit missing
    there, or not ready, has unknown engine fields). The router's slot queue is shared evenly by
    the units that can take requests (ready, not draining); with none of those, it and the
    requests held for the target make the admission queue. Demand, unless the caller knows it,
    is the tokens per second the units served: a lower bound of what arrives, so the capacity
    floor it gives never keeps an idle unit."""
    open_units = [u for u in units if u.ready and not u.draining]
    queue = router.queue if router is not None else None
    share = queue / len(open_units) if queue is not None and open_units else None
    held = router.held if router is not None and router.held is not None else 0.0
    admission = held + (queue if queue is not None and not open_units else 0.0)
    signals = tuple(_unit(u, engines, router, share if u in open_units else None) for u in units)
    if demand_tokens_per_second is None:
        served = [s.tokens_per_second for s in signals if s.tokens_per_second is not None]
        demand_tokens_per_second = sum(served) if served else None
    return Signals(
        units=signals,
        admission_queue=round(admission),
        demand_tokens_per_second=demand_tokens_per_second,
        placeable=placeable,
    )


def _unit(
    unit: UnitState, engines: Mapping[str, UnitFields], router: RouterFigures | None, queue: float | None
) -> UnitSignals:
    # A page from a pod that is not ready yet (loading weights) says nothing about load.
    fields = engines.get(unit.name, UNKNOWN) if unit.ready else UNKNOWN
    return UnitSignals(
        name=unit.name,
        ready=unit.ready,
        draining=unit.draining,
        pending_since=unit.pending_since,
        queue=queue,
        inflight=router.inflight.get(unit.name) if router is not None else None,
        **asdict(fields),
    )
