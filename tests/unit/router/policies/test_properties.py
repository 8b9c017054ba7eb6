"""Properties every policy keeps, on random backend sets and request sequences."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.router.policies import (
    POLICY_NAMES,
    BackendState,
    PolicyConfig,
    PolicySet,
    RoutingRequest,
    candidates,
    make_policy,
)
from tests.unit.router.policies.helpers import backend, blocks

METRIC = st.none() | st.floats(min_value=0, max_value=40) | st.just(float("nan"))


@st.composite
def backend_states(draw: st.DrawFn) -> BackendState:
    return backend(
        draw(st.sampled_from([f"b{i}" for i in range(8)])),
        draw(st.integers(min_value=0, max_value=40)),
        waiting=draw(METRIC),
        kv=draw(st.none() | st.floats(min_value=0, max_value=1)),
        models=draw(st.sampled_from([("m",), ("m", "n"), ("n",), ()])),
        ready=draw(st.booleans()),
        draining=draw(st.integers(0, 3)) == 0,
        healthy=draw(st.integers(0, 3)) != 0,
        at_capacity=draw(st.integers(0, 3)) == 0,
    )


def unique_by_name(states: list[BackendState]) -> list[BackendState]:
    return list({s.endpoint.name: s for s in states}.values())


REQUEST = st.builds(
    RoutingRequest,
    model=st.just("m"),
    prefix_text=st.lists(st.sampled_from("ab"), max_size=4).map(lambda letters: blocks(*letters)),
    session=st.none() | st.sampled_from(["s1", "s2", "s3"]),
)


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(POLICY_NAMES),
    st.lists(st.lists(backend_states(), max_size=8).map(unique_by_name), min_size=1, max_size=6),
    st.lists(REQUEST, min_size=1, max_size=6),
    st.sets(st.sampled_from([f"b{i}" for i in range(8)]), max_size=3),
)
def test_only_a_backend_that_passed_the_filter_is_ever_chosen(
    name: str, rounds: list[list[BackendState]], requests: list[RoutingRequest], excluded: set[str]
) -> None:
    policy = make_policy(name, PolicyConfig(), random.Random(0))
    for t, (states, req) in enumerate(zip(rounds, requests * len(rounds), strict=False)):
        found = candidates(states, "m", excluded)
        decision = policy.choose(req, found.available, float(t))
        if not found.available:
            assert decision is None
            continue
        assert decision is not None
        chosen = next(s for s in states if s.endpoint.name == decision.endpoint.name)
        assert chosen.endpoint.routable
        assert "m" in chosen.endpoint.models
        assert chosen.healthy
        assert not chosen.at_capacity
        assert chosen.endpoint.name not in excluded
        policy.record(req, decision.endpoint, float(t))


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(POLICY_NAMES),
    st.integers(min_value=0, max_value=2**32),
    st.lists(
        st.tuples(REQUEST, st.lists(st.integers(0, 20), min_size=8, max_size=8)), min_size=1, max_size=15
    ),
)
def test_same_seed_same_decisions(
    name: str, seed: int, script: list[tuple[RoutingRequest, list[int]]]
) -> None:
    def run() -> list[tuple[str, str]]:
        policies = PolicySet(default=name, rng=random.Random(seed))
        out = []
        for t, (req, in_flight) in enumerate(script):
            states = [backend(f"b{i}", n, waiting=float(n % 3), kv=n / 20) for i, n in enumerate(in_flight)]
            decision = policies.choose(req, states, float(t))
            assert decision is not None
            policies.record(req, decision.endpoint, float(t))
            out.append((decision.endpoint.name, decision.reason))
        return out

    assert run() == run()


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=2, max_value=9), st.text(min_size=1, max_size=10))
def test_adding_a_backend_moves_only_sessions_to_it_and_about_a_share(n: int, newcomer: str) -> None:
    policy = make_policy("session")
    names = [f"pod-{i}" for i in range(n)]
    before_states = [backend(name) for name in names]
    after_states = [*before_states, backend("new-" + newcomer)]
    sessions = [f"session-{i}" for i in range(300)]
    moved = 0
    for s in sessions:
        req = RoutingRequest("m", session=s)
        before = policy.choose(req, before_states, 0.0)
        after = policy.choose(req, after_states, 0.0)
        assert before is not None
        assert after is not None
        if after.endpoint != before.endpoint:
            assert after.endpoint.name == "new-" + newcomer
            moved += 1
    # Expected 300 / (n + 1); far more would mean the hash reshuffles.
    assert moved <= 2 * 300 / (n + 1) + 10


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="abc", max_size=600), st.sampled_from("xyz")), max_size=60))
def test_the_shared_index_stays_within_its_capacity(sends: list[tuple[str, str]]) -> None:
    config = PolicyConfig(block_chars=8, index_capacity=50)
    policies = PolicySet(config, default="auto")
    for t, (text, name) in enumerate(sends):
        policies.record(RoutingRequest("m", text), backend(name).endpoint, float(t))
        assert len(policies.index) <= 50
