"""One pass's `Signals` from what the runtime knows of the units, their engines' fields and the
router's figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    # Seconds from creation to ready, of a ready unit whose start is known (`group_units`).
    startup_seconds: float | None = None
    # Requests its engine runs at once, from the engine's arguments; None: unknown.
    max_running: int | None = None


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
    the units that can take requests (ready, not draining); with none of those, it joins the
    requests held for the target in the admission queue, so the core counts each request once.
    The startup is the longest of the ready units'; the batch size the smallest the ready units
    run (during a change of arguments the capacity is not overestimated), else any unit's."""
    # A page from a pod that is not ready yet (loading weights) says nothing about load.
    fields = {u.name: engines.get(u.name, UNKNOWN) if u.ready else UNKNOWN for u in units}
    open_units = [u for u in units if u.ready and not u.draining]
    queue = router.queue if router is not None else None
    share = queue / len(open_units) if queue is not None and open_units else None
    held = router.held if router is not None and router.held is not None else 0.0
    admission = held + (queue if queue is not None and not open_units else 0.0)
    signals = tuple(_unit(u, fields[u.name], router, share if u in open_units else None) for u in units)
    if demand_tokens_per_second is None:
        demand_tokens_per_second = demand(router, list(fields.values()))
    return Signals(
        units=signals,
        admission_queue=round(admission),
        demand_tokens_per_second=demand_tokens_per_second,
        placeable=placeable,
        max_running=min(batches(u for u in units if u.ready) or batches(units), default=None),
        startup_seconds=max(
            (u.startup_seconds for u in units if u.ready and u.startup_seconds is not None), default=None
        ),
    )


def batches(units: Iterable[UnitState]) -> list[int]:
    return [u.max_running for u in units if u.max_running is not None]


def demand(router: RouterFigures | None, fields: Sequence[UnitFields]) -> float | None:
    """Tokens per second arriving for the target, prompt and expected output. From the router's
    arriving prompt tokens, times the tokens the units served per prompt token in the window
    (1 when no unit served any: prompt tokens alone, a lower bound). Without the router's
    figure, the tokens the units served: also a lower bound, since queued requests are missing."""
    served = [f for f in fields if f.tokens_per_second is not None]
    arriving = router.arrival_prompt_tokens_per_second if router is not None else None
    if arriving is None:
        return sum(f.tokens_per_second or 0.0 for f in served) if served else None
    paired = [f for f in served if f.prompt_tokens_per_second is not None]
    prompt = sum(f.prompt_tokens_per_second or 0.0 for f in paired)
    total = sum(f.tokens_per_second or 0.0 for f in paired)
    return arriving * (total / prompt if prompt > 0 else 1.0)


def _unit(
    unit: UnitState, fields: UnitFields, router: RouterFigures | None, queue: float | None
) -> UnitSignals:
    engine = asdict(fields)
    del engine["prompt_tokens_per_second"]  # only for the demand; the core has no such signal
    return UnitSignals(
        name=unit.name,
        ready=unit.ready,
        draining=unit.draining,
        pending_since=unit.pending_since,
        queue=queue,
        inflight=router.inflight.get(unit.name) if router is not None else None,
        **engine,
    )
