"""The scored policies' short cuts decide exactly as the full formula would.

Without engine metrics `loads` skips imputing the waiting queue and `ScoredPolicy` drops the KV
term. Backends whose figures are all NaN take the full path (NaN is imputed to 0.0, the same as
nothing known), so the two runs below must agree on every decision, ties included.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.router.policies import BackendState, RoutingRequest, make_policy
from phalanx.router.policies.state import known_kv_usages, kv_usages, loads
from tests.unit.router.policies.helpers import backend, blocks

NAN = float("nan")


def test_loads_without_queues_are_the_in_flight_counts_as_floats() -> None:
    out = loads([backend("a", 3), backend("b", 0)])
    assert out == [3.0, 0.0]
    assert all(type(v) is float for v in out)
    assert loads([backend("a", 3), backend("b", 0, waiting=NAN)]) == [3.0, 0.0]


def test_known_kv_usages_is_none_only_when_no_backend_reports_one() -> None:
    assert known_kv_usages([backend("a"), backend("b")]) is None
    mixed = [backend("a"), backend("b", kv=0.5)]
    assert known_kv_usages(mixed) == kv_usages(mixed) == [0.5, 0.5]
    # A NaN is reported (and imputed): the full path.
    assert known_kv_usages([backend("a", kv=NAN), backend("b")]) == [0.0, 0.0]


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
def test_no_metrics_decides_as_metrics_that_impute_to_zero(
    name: str, script: list[tuple[RoutingRequest, list[int]]]
) -> None:
    def run(nan: bool) -> list[tuple[str, str, float]]:
        policy = make_policy(name)
        out = []
        for t, (req, in_flight) in enumerate(script):
            states: list[BackendState] = [backend(f"b{i}", n) for i, n in enumerate(in_flight)]
            if nan:
                states = [dataclasses.replace(s, waiting=NAN, kv_cache_usage=NAN) for s in states]
            decision = policy.choose(req, states, float(t))
            assert decision is not None
            policy.record(req, decision.endpoint, float(t))
            out.append((decision.endpoint.name, decision.reason, decision.prefix_match))
        return out

    assert run(nan=False) == run(nan=True)
