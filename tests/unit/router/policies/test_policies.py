"""Each policy's choice on crafted backend states."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from phalanx.router.policies import BackendState, Decision, Policy, PolicyConfig, RoutingRequest, make_policy
from phalanx.router.policies.base import stable_hash
from tests.unit.router.policies.helpers import backend, blocks, request

NOW = 1000.0


def pick(policy: Policy, states: Sequence[BackendState], req: RoutingRequest | None = None) -> Decision:
    decision = policy.choose(req or request(), states, NOW)
    assert decision is not None
    return decision


def picks(policy: Policy, states: Sequence[BackendState], n: int) -> list[str]:
    return [pick(policy, states).endpoint.name for _ in range(n)]


def send(policy: Policy, req: RoutingRequest, states: Sequence[BackendState], now: float = NOW) -> Decision:
    """Choose and record, as the router does."""
    decision = policy.choose(req, states, now)
    assert decision is not None
    policy.record(req, decision.endpoint, now)
    return decision


@pytest.mark.parametrize(
    "name", ["round-robin", "least-in-flight", "power-of-two", "session", "queue-kv", "auto"]
)
def test_nothing_available_is_no_decision(name: str) -> None:
    assert make_policy(name).choose(request(), [], NOW) is None


@pytest.mark.parametrize("name", ["power-of-two", "prefix-cache", "queue-kv", "auto"])
def test_a_single_candidate_is_taken_without_scoring(name: str) -> None:
    decision = pick(make_policy(name), [backend("only", 99, waiting=50.0, kv=1.0)])
    assert (decision.endpoint.name, decision.reason) == ("only", "only-choice")


# --- round-robin ---------------------------------------------------------------------------


def test_round_robin_cycles_by_name_whatever_the_load() -> None:
    states = [backend("c", 9), backend("a", 0), backend("b", 5)]
    assert picks(make_policy("round-robin"), states, 4) == ["a", "b", "c", "a"]
    assert pick(make_policy("round-robin"), states).reason == "rotation"


def test_round_robin_keeps_its_turn_when_the_set_changes() -> None:
    policy = make_policy("round-robin")
    assert picks(policy, [backend("a"), backend("b"), backend("c")], 2) == ["a", "b"]
    # b is now at capacity (filtered out): the turn goes on after b, not from the start.
    assert picks(policy, [backend("a"), backend("c"), backend("d")], 3) == ["c", "d", "a"]


# --- least-in-flight -----------------------------------------------------------------------


def test_least_in_flight_takes_the_idlest() -> None:
    decision = pick(make_policy("least-in-flight"), [backend("a", 3), backend("b", 1), backend("c", 2)])
    assert (decision.endpoint.name, decision.reason, decision.policy) == (
        "b",
        "least-loaded",
        "least-in-flight",
    )


def test_least_in_flight_ignores_engine_metrics() -> None:
    states = [backend("a", 1, waiting=0.0, kv=0.0), backend("b", 0, waiting=30.0, kv=0.99)]
    assert pick(make_policy("least-in-flight"), states).endpoint.name == "b"


def test_least_in_flight_ties_go_round_robin_by_name() -> None:
    states = [backend("c", 0), backend("b", 4), backend("a", 0)]
    assert picks(make_policy("least-in-flight"), states, 4) == ["a", "c", "a", "c"]


# --- power-of-two --------------------------------------------------------------------------


def test_power_of_two_with_two_candidates_takes_the_lighter() -> None:
    policy = make_policy("power-of-two", rng=random.Random(3))
    for _ in range(20):
        decision = pick(policy, [backend("busy", 7), backend("idle", 2)])
        assert (decision.endpoint.name, decision.reason) == ("idle", "sampled")


def test_power_of_two_counts_the_engine_queue() -> None:
    policy = make_policy("power-of-two", rng=random.Random(3))
    assert {pick(policy, [backend("a", 1, waiting=10.0), backend("b", 4, waiting=0.0)]).endpoint.name} == {
        "b"
    }


def test_power_of_two_never_picks_the_unique_busiest() -> None:
    policy = make_policy("power-of-two", rng=random.Random(5))
    states = [backend("hot", 50), *(backend(f"b{i}", i) for i in range(4))]
    chosen = picks(policy, states, 200)
    assert "hot" not in chosen
    # and it does spread: every other backend is drawn with a lighter partner at least once
    assert set(chosen) == {"b0", "b1", "b2", "b3"}


def test_power_of_two_is_reproducible_with_a_seed() -> None:
    states = [backend(f"b{i}", i % 3) for i in range(6)]
    one = picks(make_policy("power-of-two", rng=random.Random(11)), states, 50)
    assert picks(make_policy("power-of-two", rng=random.Random(11)), states, 50) == one
    assert picks(make_policy("power-of-two", rng=random.Random(12)), states, 50) != one


# --- session -------------------------------------------------------------------------------


def test_a_session_always_lands_on_the_same_backend_whatever_the_load() -> None:
    policy = make_policy("session")
    states = [backend(n, 0) for n in "abcd"]
    first = pick(policy, states, request(session="conv-1"))
    assert first.reason == "session"
    loaded = [backend(s.endpoint.name, 100 if s.endpoint.name == first.endpoint.name else 0) for s in states]
    for _ in range(5):
        assert pick(policy, loaded, request(session="conv-1")).endpoint == first.endpoint


def test_sessions_spread_over_backends() -> None:
    policy = make_policy("session")
    states = [backend(n) for n in "abcd"]
    counts = dict.fromkeys("abcd", 0)
    for i in range(800):
        counts[pick(policy, states, request(session=f"user-{i}")).endpoint.name] += 1
    assert all(120 < c < 280 for c in counts.values()), counts


def test_a_session_whose_backend_leaves_moves_and_others_stay() -> None:
    policy = make_policy("session")
    states = [backend(n) for n in "abcd"]
    before = {i: pick(policy, states, request(session=f"s{i}")).endpoint.name for i in range(200)}
    without_b = [s for s in states if s.endpoint.name != "b"]
    after = {i: pick(policy, without_b, request(session=f"s{i}")).endpoint.name for i in range(200)}
    for i, name in before.items():
        if name != "b":
            assert after[i] == name
        else:
            assert after[i] != "b"


def test_no_session_falls_back_to_least_in_flight() -> None:
    decision = pick(make_policy("session"), [backend("a", 2), backend("b", 1)], request())
    assert (decision.endpoint.name, decision.reason) == ("b", "fallback")


def test_sessions_hash_the_same_in_every_router_replica() -> None:
    # Not Python's per-process string hash: these values hold in any process.
    assert stable_hash("conv-1") == 12699295510116361625
    states = [backend(n) for n in "abcdefgh"]
    homes = [pick(make_policy("session"), states, request(session=f"s{i}")).endpoint.name for i in range(8)]
    assert "".join(homes) == "gffghebf"


@pytest.mark.parametrize("name", ["session", "auto"])
@pytest.mark.parametrize(
    "session",
    [
        b"\xff\xfe".decode("utf-8", "surrogateescape"),  # header bytes that are not UTF-8
        "\ud800",  # a lone surrogate a JSON `user` field can carry
    ],
)
def test_a_session_that_is_not_utf8_still_routes_and_sticks(name: str, session: str) -> None:
    policy = make_policy(name)
    states = [backend(n) for n in "abc"]
    first = pick(policy, states, request(session=session))
    assert pick(policy, states, request(session=session)).endpoint == first.endpoint


# --- queue-kv ------------------------------------------------------------------------------


def test_queue_kv_avoids_the_engine_with_a_queue() -> None:
    states = [backend("queued", 1, waiting=12.0, kv=0.5), backend("free", 2, waiting=0.0, kv=0.5)]
    decision = pick(make_policy("queue-kv"), states)
    assert (decision.endpoint.name, decision.reason) == ("free", "least-loaded")


def test_queue_kv_breaks_even_loads_on_kv_usage() -> None:
    states = [backend("full", 2, waiting=0.0, kv=0.9), backend("empty", 2, waiting=0.0, kv=0.1)]
    assert pick(make_policy("queue-kv"), states).endpoint.name == "empty"


def test_queue_kv_without_metrics_is_least_in_flight() -> None:
    states = [backend("a", 3), backend("b", 1), backend("c", 2)]
    assert pick(make_policy("queue-kv"), states).endpoint.name == "b"


def test_queue_kv_treats_stale_metrics_as_average() -> None:
    # c's metrics are stale: neither rewarded as zero nor punished; in-flight still counts.
    states = [backend("a", 0, waiting=4.0, kv=0.8), backend("b", 0, waiting=0.0, kv=0.0), backend("c", 0)]
    assert pick(make_policy("queue-kv"), states).endpoint.name == "b"
    states = [backend("a", 1, waiting=4.0, kv=0.8), backend("b", 5, waiting=4.0, kv=0.8), backend("c", 0)]
    assert pick(make_policy("queue-kv"), states).endpoint.name == "c"


def test_queue_kv_ignores_the_prompt() -> None:
    policy = make_policy("queue-kv")
    req = request(blocks("a", "b", "c"))
    states = [backend("x", 0), backend("y", 0)]
    first = send(policy, req, states)
    states = [
        backend("x", 1 if first.endpoint.name == "x" else 0),
        backend("y", 1 if first.endpoint.name == "y" else 0),
    ]
    assert pick(policy, states, req).endpoint != first.endpoint


# --- prefix-cache --------------------------------------------------------------------------

PROMPT = blocks("s", "y", "s", "q")


def test_prefix_cache_follows_the_backend_that_saw_the_prompt() -> None:
    policy = make_policy("prefix-cache")
    idle = [backend("a"), backend("b"), backend("c")]
    first = send(policy, request(PROMPT), idle)
    assert first.reason == "least-loaded"
    # The backend that has it is now the busiest; the prompt still goes there.
    busy = [backend(s.endpoint.name, 3 if s.endpoint == first.endpoint else 0) for s in idle]
    again = pick(policy, busy, request(PROMPT + "new question"))
    assert again.endpoint == first.endpoint
    assert (again.reason, again.prefix_match) == ("prefix-hit", 1.0)


def test_prefix_match_is_the_share_of_blocks_held() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(blocks("a", "b", "c")), [backend("x")])
    decision = pick(policy, [backend("x"), backend("y")], request(blocks("a", "b", "c", "d")))
    assert (decision.endpoint.name, decision.prefix_match) == ("x", 0.75)
    assert str(decision) == "prefix-cache: x (prefix-hit 0.75)"


def test_a_new_prompt_goes_to_the_least_loaded() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(blocks("a", "b")), [backend("x")])
    decision = pick(policy, [backend("x", 3), backend("y", 1)], request(blocks("z", "b")))
    assert (decision.endpoint.name, decision.reason, decision.prefix_match) == ("y", "least-loaded", 0.0)


def test_a_half_hit_is_not_worth_the_busiest_backend_against_an_idle_one() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(blocks("a", "b")), [backend("x")])
    query = request(blocks("a", "b", "c", "d"))
    assert pick(policy, [backend("x", 10), backend("y", 0)], query).endpoint.name == "y"
    assert pick(policy, [backend("x", 5), backend("y", 4)], query).endpoint.name == "x"


def test_a_little_load_does_not_outweigh_a_small_hit() -> None:
    # One request in flight is no load (load_floor): a quarter hit still wins.
    policy = make_policy("prefix-cache")
    send(policy, request(blocks("a")), [backend("x")])
    query = request(blocks("a", "b", "c", "d"))
    assert pick(policy, [backend("x", 1), backend("y", 0)], query).endpoint.name == "x"


def test_the_balance_guard_overrides_a_full_hit() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(PROMPT), [backend("x")])
    under = pick(policy, [backend("x", 16), backend("y", 0)], request(PROMPT))
    assert (under.endpoint.name, under.reason) == ("x", "prefix-hit")
    over = pick(policy, [backend("x", 17), backend("y", 0)], request(PROMPT))
    assert (over.endpoint.name, over.reason) == ("y", "imbalance")


def test_the_guard_needs_relative_imbalance_too() -> None:
    policy = make_policy("prefix-cache", PolicyConfig(imbalance_abs=4, imbalance_rel=1.5))
    send(policy, request(PROMPT), [backend("x")])
    # 5 more than y but only 1.25 times as many: follow the cache.
    assert pick(policy, [backend("x", 25), backend("y", 20)], request(PROMPT)).endpoint.name == "x"
    assert pick(policy, [backend("x", 31), backend("y", 20)], request(PROMPT)).reason == "imbalance"


def test_the_guard_counts_the_engine_queue() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(PROMPT), [backend("x")])
    states = [backend("x", 2, waiting=20.0), backend("y", 0, waiting=0.0)]
    assert pick(policy, states, request(PROMPT)).reason == "imbalance"


def test_kv_pressure_steers_between_equal_hits() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(PROMPT), [backend("x")])
    send(policy, request(PROMPT), [backend("y")])
    states = [backend("x", 0, kv=0.95), backend("y", 0, kv=0.2)]
    assert pick(policy, states, request(PROMPT)).endpoint.name == "y"


def test_a_backend_that_left_the_candidates_is_never_chosen_for_its_cache() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(PROMPT), [backend("x")])
    decision = pick(policy, [backend("y", 3), backend("z", 2)], request(PROMPT))
    assert (decision.endpoint.name, decision.prefix_match) == ("z", 0.0)


def test_prefix_knowledge_expires() -> None:
    policy = make_policy("prefix-cache", PolicyConfig(index_ttl_s=60))
    send(policy, request(PROMPT), [backend("x")], now=0.0)
    assert policy.choose(request(PROMPT), [backend("x", 2), backend("y")], 59.0).endpoint.name == "x"  # type: ignore[union-attr]
    assert policy.choose(request(PROMPT), [backend("x", 2), backend("y")], 61.0).endpoint.name == "y"  # type: ignore[union-attr]


def test_same_prompt_for_another_model_is_a_miss() -> None:
    policy = make_policy("prefix-cache")
    send(policy, request(PROMPT, model="m"), [backend("x", models=("m", "n"))])
    states = [backend("x", 1, models=("m", "n")), backend("y", 0, models=("m", "n"))]
    assert pick(policy, states, request(PROMPT, model="n")).endpoint.name == "y"


def test_equal_costs_rotate_by_name() -> None:
    policy = make_policy("prefix-cache")
    states = [backend("b"), backend("a"), backend("c")]
    assert picks(policy, states, 4) == ["a", "b", "c", "a"]


def test_prefix_cache_ignores_sessions() -> None:
    policy = make_policy("prefix-cache")
    states = [backend(n) for n in "abcd"]
    chosen = {pick(policy, states, request(session="conv")).endpoint.name for _ in range(4)}
    assert chosen == set("abcd")


def test_a_burst_of_one_prompt_spills_over_once_the_guard_trips() -> None:
    policy = make_policy("prefix-cache")
    in_flight = {"x": 0, "y": 0}
    for _ in range(40):
        states = [backend(n, c) for n, c in in_flight.items()]
        decision = send(policy, request(PROMPT), states)
        in_flight[decision.endpoint.name] += 1
    # The first 17 stay together; past the guard both hold the prompt and share the rest.
    assert sorted(in_flight.values()) == [20, 20]


# --- auto ----------------------------------------------------------------------------------


def test_auto_without_prefix_or_load_follows_the_session() -> None:
    states = [backend(n) for n in "abcdefgh"]
    session_choice = pick(make_policy("session"), states, request(session="conv-7")).endpoint
    auto = make_policy("auto")
    for _ in range(3):
        decision = pick(auto, states, request(session="conv-7"))
        assert (decision.endpoint, decision.reason) == (session_choice, "session")


def test_auto_without_a_session_is_prefix_cache() -> None:
    states = [backend("a", 1), backend("b", 0, kv=0.5), backend("c", 2, waiting=1.0)]
    auto, prefix = make_policy("auto"), make_policy("prefix-cache")
    for i in range(10):
        req = request(blocks("p", str(i % 3)))
        assert send(auto, req, states).endpoint == send(prefix, req, states).endpoint


def test_auto_prefers_a_full_hit_to_the_session_backend() -> None:
    states = [backend(n) for n in "abcd"]
    home = pick(make_policy("session"), states, request(session="conv")).endpoint.name
    other = next(n for n in "abcd" if n != home)
    auto = make_policy("auto")
    send(auto, request(PROMPT), [backend(other)])
    decision = pick(auto, states, request(PROMPT, session="conv"))
    assert (decision.endpoint.name, decision.reason) == (other, "prefix-hit")


def test_auto_leaves_the_session_backend_when_it_is_much_busier() -> None:
    states = [backend(n) for n in "ab"]
    home = pick(make_policy("session"), states, request(session="conv")).endpoint.name
    loaded = [backend(n, 10 if n == home else 0) for n in "ab"]
    assert pick(make_policy("auto"), loaded, request(session="conv")).endpoint.name != home
