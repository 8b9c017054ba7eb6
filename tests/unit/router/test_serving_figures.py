"""The router's figures for one ModelServing, as the autoscalers read them."""

from __future__ import annotations

from phalanx.autoscale.observe.snapshot import PageSnapshot
from phalanx.router.serving_figures import figures_for_serving
from tests.unit.autoscale.test_observe_router import router_page
from tests.unit.router.test_declared import container, role, serving

DEMO = serving(role("sim", container("--served-model-name", "demo")), name="demo")
OTHER = serving(role("sim", container("--served-model-name", "other")), name="other")
ENDPOINTS = {"team-a/demo-0-sim-0-0": "demo-0"}
PAGE = router_page({"team-a/demo-0-sim-0-0": 2}, {"normal": 5}, held={"demo": 1}, arrivals={"demo": 4})


def test_the_serving_s_model_and_units_are_read_and_the_queue_is_its_own_when_it_is_alone() -> None:
    figures, snapshot = figures_for_serving(
        PAGE, None, 10.0, serving=DEMO, servings=[DEMO], endpoints=ENDPOINTS
    )
    assert figures is not None
    assert (figures.inflight, figures.held, figures.queue) == ({"demo-0": 2}, 1, 4)
    assert snapshot is not None and snapshot.time == 10.0


def test_beside_another_serving_the_shared_queue_is_unknown() -> None:
    figures, _ = figures_for_serving(
        PAGE, None, 10.0, serving=DEMO, servings=[DEMO, OTHER], endpoints=ENDPOINTS
    )
    assert figures is not None
    assert (figures.queue, figures.held) == (None, 1)


def test_no_page_or_no_model_known_is_unknown_and_keeps_the_window() -> None:
    before = PageSnapshot(5.0, {})
    assert figures_for_serving(None, before, 10.0, serving=DEMO, servings=[DEMO], endpoints={}) == (
        None,
        before,
    )
    unnamed = serving(role("sim", container()), name="demo")  # names known only once its pods run
    assert figures_for_serving(PAGE, before, 10.0, serving=unnamed, servings=[unnamed], endpoints={}) == (
        None,
        before,
    )
