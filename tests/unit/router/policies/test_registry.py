from __future__ import annotations

import random

import pytest

from phalanx.router.policies import (
    DEFAULT_POLICY,
    POLICY_NAMES,
    PolicyConfig,
    PolicySet,
    RoutingRequest,
    make_policy,
)
from tests.unit.router.policies.helpers import backend, blocks, request

PROMPT = blocks("a", "b", "c")


def test_every_named_policy_is_built_under_its_name() -> None:
    assert set(POLICY_NAMES) == {
        "auto",
        "prefix-cache",
        "queue-kv",
        "least-in-flight",
        "power-of-two",
        "round-robin",
        "session",
    }
    for name in POLICY_NAMES:
        policy = make_policy(name, PolicyConfig(), random.Random(0))
        assert policy.name == name
        decision = policy.choose(request(PROMPT, session="s"), [backend("x"), backend("y")], 0.0)
        assert decision is not None
        assert decision.policy == name
        policy.record(request(PROMPT), decision.endpoint, 0.0)


def test_the_default_is_auto() -> None:
    assert DEFAULT_POLICY == "auto"
    assert PolicySet().default == "auto"


def test_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'fastest'") as caught:
        make_policy("fastest")
    for name in POLICY_NAMES:
        assert name in str(caught.value)


def test_an_unknown_default_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="valid policies"):
        PolicySet(default="nope")


def test_a_request_may_name_another_policy() -> None:
    policies = PolicySet(default="least-in-flight")
    states = [backend("a", 5), backend("b", 0)]
    plain = policies.choose(request(), states, 0.0)
    assert plain is not None
    assert (plain.policy, plain.endpoint.name) == ("least-in-flight", "b")
    rr = policies.choose(RoutingRequest("m", policy="round-robin"), states, 0.0)
    assert rr is not None
    assert (rr.policy, rr.endpoint.name) == ("round-robin", "a")


def test_a_bad_override_is_a_value_error_for_the_client() -> None:
    with pytest.raises(ValueError, match="Unknown routing policy 'Fast'"):
        PolicySet().choose(RoutingRequest("m", policy="Fast"), [backend("a")], 0.0)


def test_policies_keep_their_state_between_requests() -> None:
    policies = PolicySet(default="round-robin")
    states = [backend("a"), backend("b")]
    assert policies.policy() is policies.policy("round-robin")
    names = [policies.choose(request(), states, 0.0).endpoint.name for _ in range(3)]  # type: ignore[union-attr]
    assert names == ["a", "b", "a"]


def test_requests_routed_by_any_policy_teach_the_prefix_index() -> None:
    policies = PolicySet(default="auto")
    sent = RoutingRequest("m", PROMPT, policy="round-robin")
    # round-robin sends the prompt to "a" though "b" is idler ...
    decision = policies.choose(sent, [backend("a", 1), backend("b", 0)], 0.0)
    assert decision is not None
    assert decision.endpoint.name == "a"
    policies.record(sent, decision.endpoint, 0.0)
    # ... and the default policy knows a holds it now.
    follow = policies.choose(request(PROMPT), [backend("a", 1), backend("b", 0)], 1.0)
    assert follow is not None
    assert (follow.endpoint.name, follow.reason) == ("a", "prefix-hit")


def test_nothing_is_learned_until_a_prefix_policy_is_used() -> None:
    policies = PolicySet(default="least-in-flight")
    policies.record(request(PROMPT), backend("a").endpoint, 0.0)
    assert len(policies.index) == 0
    policies.policy("prefix-cache")
    policies.record(request(PROMPT), backend("a").endpoint, 0.0)
    assert len(policies.index) == 3


def test_queue_kv_alone_does_not_learn_prefixes() -> None:
    policies = PolicySet(default="queue-kv")
    policies.record(request(PROMPT), backend("a").endpoint, 0.0)
    assert len(policies.index) == 0


def test_forget_empties_a_backends_cache() -> None:
    policies = PolicySet(default="prefix-cache")
    policies.record(request(PROMPT), backend("a").endpoint, 0.0)
    policies.forget("a", 1.0)
    decision = policies.choose(request(PROMPT), [backend("a", 1), backend("b", 0)], 2.0)
    assert decision is not None
    assert decision.endpoint.name == "b"


@pytest.mark.parametrize(
    "field",
    ["block_chars", "max_prefix_blocks", "index_capacity", "index_ttl_s", "prefix_weight", "load_floor"],
)
def test_config_refuses_negative_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PolicyConfig(**{field: -1})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("block_chars", 0),
        ("block_chars", 1.5),
        ("index_capacity", 0),
        ("index_ttl_s", 0),
        ("imbalance_rel", 0.5),
    ],
)
def test_config_refuses_values_that_break_a_policy(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        PolicyConfig(**{field: value})


def test_config_refuses_nan() -> None:
    with pytest.raises(ValueError, match="kv_weight"):
        PolicyConfig(kv_weight=float("nan"))


def test_zero_weights_are_allowed() -> None:
    config = PolicyConfig(prefix_weight=0, kv_weight=0, session_weight=0)
    assert config.prefix_chars == 128 * 256
