"""`Router._states` reuses an endpoint's state while its inputs hold, and is never stale."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.router import Endpoint, Router
from phalanx.router.backends.load import BackendLoad
from phalanx.router.policies import BackendState

NAMES = ("a", "b", "c")
# A stand-in for the scraper and the detector goes into attributes the compiled router types.
pytestmark = pytest.mark.pure_python


def ep(name: str, models: tuple[str, ...] = ("m",)) -> Endpoint:
    return Endpoint(
        name=name, url=f"http://10.0.0.1:{8000 + ord(name)}", serving="s", group_index=0, models=models
    )


@dataclass
class Inputs:
    """What `_states` reads besides its arguments: the scraper's readings and the ejected set."""

    readings: dict[str, BackendLoad] = field(default_factory=dict)
    out: frozenset[str] = frozenset()

    def reading(self, name: str, now: float) -> BackendLoad | None:
        return self.readings.get(name)

    def ejected(self, now: float) -> frozenset[str]:
        return self.out

    def set_endpoints(self, endpoints: object) -> None:
        """The detector's (and `update` the scraper's): told of each new endpoint set."""

    update = set_endpoints


def router_with(inputs: Inputs) -> Router:
    router = Router()
    router._scraper = inputs  # type: ignore[assignment]
    router.detector = inputs  # type: ignore[assignment]
    return router


def built(router: Router, inputs: Inputs, model: str, saturated: frozenset[str]) -> list[BackendState]:
    """The states as built afresh each time (the function before it kept any)."""
    out = []
    for e in router.endpoints():
        if model in e.models:
            load = inputs.readings.get(e.name)
            out.append(
                BackendState(
                    endpoint=e,
                    in_flight=router.in_flight().get(e.name, 0),
                    waiting=load.waiting if load else None,
                    running=load.running if load else None,
                    kv_cache_usage=load.kv_cache_usage if load else None,
                    healthy=e.name not in inputs.out,
                    at_capacity=e.name in saturated,
                )
            )
    return out


def test_unchanged_inputs_give_the_same_objects_and_a_change_a_new_one() -> None:
    inputs = Inputs()
    router = router_with(inputs)
    router.set_endpoints([ep("a"), ep("b")])
    first = router._states("m", frozenset(), 0.0)
    again = router._states("m", frozenset(), 1.0)
    assert [x is y for x, y in zip(first, again, strict=True)] == [True, True]
    router._in_flight["a"] = 2
    inputs.readings["b"] = BackendLoad(waiting=1.0)
    third = router._states("m", frozenset(), 2.0)
    assert [x is y for x, y in zip(first, third, strict=True)] == [False, False]
    assert third == built(router, inputs, "m", frozenset())
    # A new reading with the same figures is a new input (the object is compared, not the values).
    inputs.readings["b"] = BackendLoad(waiting=1.0)
    assert router._states("m", frozenset(), 3.0)[1] is not third[1]


CHANGE = st.one_of(
    st.tuples(st.just("flight"), st.sampled_from(NAMES), st.integers(0, 3)),
    st.tuples(st.just("reading"), st.sampled_from(NAMES), st.none() | st.floats(0, 4)),
    st.tuples(st.just("eject"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("endpoints"), st.sampled_from(NAMES), st.sampled_from([("m",), ("n",), ("m", "n")])),
    st.tuples(st.just("saturate"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("drop"), st.sampled_from(NAMES), st.none()),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(CHANGE, st.sampled_from(["m", "n"])), max_size=25))
def test_states_always_equal_a_fresh_build(steps: list[tuple[tuple[str, str, object], str]]) -> None:
    inputs = Inputs()
    router = router_with(inputs)
    models = dict.fromkeys(NAMES, ("m",))
    router.set_endpoints([ep(n, models[n]) for n in NAMES])
    saturated: set[str] = set()
    for (kind, name, value), model in steps:
        if kind == "flight":
            router._in_flight[name] = value  # type: ignore[assignment]
        elif kind == "reading":
            if value is None:
                inputs.readings.pop(name, None)
            else:
                inputs.readings[name] = BackendLoad(waiting=value, kv_cache_usage=0.5)  # type: ignore[arg-type]
        elif kind == "eject":
            inputs.out = inputs.out | {name} if value else inputs.out - {name}
        elif kind == "saturate":
            saturated = saturated | {name} if value else saturated - {name}
        else:  # a changed or dropped endpoint is a new Endpoint object
            if kind == "endpoints":
                models[name] = value  # type: ignore[assignment]
            else:
                models.pop(name, None)
            router.set_endpoints([ep(n, m) for n, m in models.items()])
        assert router._states(model, frozenset(saturated), 0.0) == built(
            router, inputs, model, frozenset(saturated)
        )
