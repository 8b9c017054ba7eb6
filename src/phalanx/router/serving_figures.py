"""The router's figures for one ModelServing, as both autoscaler shells read them (pure): the
model its entry pods serve, and whether the router serves nothing else (then requests for an
unknown model are this serving's too)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from phalanx.autoscale.observe.router import RouterFigures, read_router
from phalanx.autoscale.observe.snapshot import PageSnapshot
from phalanx.router.declared import declared_by_servings, serving_models

Object = dict[str, Any]


def figures_for_serving(
    page: str | None,
    previous: PageSnapshot | None,
    now: float,
    *,
    serving: Object,
    servings: Iterable[Object],
    endpoints: Mapping[str, str],
) -> tuple[RouterFigures | None, PageSnapshot | None]:
    """The router's figures for `serving` (its `to_dict()`) from the page read at `now` (None: not
    read), and the snapshot to pass next time. `servings` are all the router serves; `endpoints`
    maps endpoint name -> unit name. None (unknown) when the page was not read or the serving's
    model names cannot be known before its pods run."""
    models = serving_models(serving) or ()
    if not models or page is None:
        return None, previous
    sole = declared_by_servings(servings).models == set(models)
    return read_router(page, previous, now, model=models[0], endpoints=endpoints, sole_target=sole)
