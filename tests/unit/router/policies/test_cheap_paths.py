"""The scored policies' short cuts decide exactly as the full formula would.

`loads` and `kv_term` take one pass when every figure is usable and impute otherwise, and
`ScoredPolicy` drops the KV term when it would add 0.0 to every cost (nothing reported, or no
cache in use). Figures that are NaN take the imputing path and become the mean of the known ones
(0.0 when none is known), so the runs below must agree on every decision, ties included.
"""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.router.policies import BackendState, RoutingRequest, make_policy
from phalanx.router.policies.state import kv_term, kv_usages, loads
from tests.unit.router.policies.helpers import backend, blocks

NAN = float("nan")
FIGURE = st.none() | st.floats(min_value=-1, max_value=3) | st.sampled_from([NAN, math.inf, 0.0, 1.0])


def spelled_out(values: list[float | None]) -> list[float]:
    """The rule in words: unusable figures (unknown, NaN, negative, infinite) become the mean of
    the usable ones, or 0.0 when there are none."""
    usable = [v for v in values if v is not None and math.isfinite(v) and v >= 0]
    mean = sum(usable) / len(usable) if usable else 0.0
    return [v if v is not None and math.isfinite(v) and v >= 0 else mean for v in values]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), FIGURE, FIGURE), min_size=1, max_size=5))
def test_loads_and_kv_term_follow_the_rule_exactly(
    figures: list[tuple[int, float | None, float | None]],
) -> None:
    states = [backend(f"b{i}", n, waiting=w, kv=k) for i, (n, w, k) in enumerate(figures)]
    waiting = spelled_out([w for _, w, _ in figures])
    assert loads(states) == [n + w for (n, _, _), w in zip(figures, waiting, strict=True)]
    clamped = [k if k is None or math.isnan(k) or k <= 1 else 1.0 for _, _, k in figures]
    expected = spelled_out(clamped)
    assert kv_usages(states) == expected
    assert kv_term(states) == (expected if any(expected) else None)


def test_kv_term_is_none_only_when_it_would_add_nothing() -> None:
    assert kv_term([backend("a"), backend("b")]) is None
    assert kv_term([backend("a", kv=0.0), backend("b", kv=0.0)]) is None
    assert kv_term([backend("a", kv=NAN), backend("b", kv=0.0)]) is None
    assert kv_term([backend("a"), backend("b", kv=0.5)]) == [0.5, 0.5]
    assert kv_term([backend("a", kv=2.0), backend("b", kv=0.0)]) == [1.0, 0.0]


REQUEST = st.builds(
    RoutingRequest,
    model=st.just("m"),
    prefix_text=st.lists(st.sampled_from("ab"), max_size=3).map(lambda letters: blocks(*letters)),
    session=st.none() | st.sampled_from(["s1", "s2"]),
)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["auto", "prefix-cache", "queue-kv"]),
    st.lists(
        st.tuples(REQUEST, st.lists(st.integers(0, 30), min_size=2, max_size=5)), min_size=1, max_size=12
    ),
)
def test_figures_that_come_to_zero_decide_as_none_at_all(
    name: str, script: list[tuple[RoutingRequest, list[int]]]
) -> None:
    def run(figure: float | None) -> list[tuple[str, str, float]]:
        policy = make_policy(name)
        out = []
        for t, (req, in_flight) in enumerate(script):
            states: list[BackendState] = [backend(f"b{i}", n) for i, n in enumerate(in_flight)]
            states = [dataclasses.replace(s, waiting=figure, kv_cache_usage=figure) for s in states]
            decision = policy.choose(req, states, float(t))
            assert decision is not None
            policy.record(req, decision.endpoint, float(t))
            out.append((decision.endpoint.name, decision.reason, decision.prefix_match))
        return out

    # None, 0.0 and NaN (imputed to 0.0): the KV term dropped. 1e-300: the term computed, and
    # too small to move any cost out of a tie.
    assert run(None) == run(0.0) == run(NAN) == run(1e-300)
