"""The prefill/decode decisions: which endpoints take part, and when a request skips prefill."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies import BackendState
from phalanx.router.policies.pd import (
    PdConfig,
    answering_states,
    decode_candidates,
    is_disaggregated,
    main_states,
    pairable,
    plan_prefill,
)
from phalanx.router.policies.pdbacklog import Pending, PrefillBacklog

LONG = 4096  # prompt tokens well above the default threshold


def ep(name: str, role: str | None, *, key: str = "demo", protocol: str = "vllm", **kw: Any) -> Endpoint:
    return Endpoint(
        name=name,
        url="http://10.0.0.1:8000",
        serving="demo",
        group_index=0,
        models=kw.pop("models", ("m",)),
        pd_role=role,  # type: ignore[arg-type]
        pd_protocol=protocol,  # type: ignore[arg-type]
        pd_pair_key=key,
        **kw,
    )


def st(endpoint: Endpoint, **kw: Any) -> BackendState:
    return BackendState(endpoint=endpoint, **kw)


DECODE = ep("d0", "decode")


def plan(states: list[BackendState], *, tokens: int = LONG, cached: float = 0.0, **config: Any) -> Any:
    return plan_prefill(DECODE, cached, tokens, states, "m", PdConfig(**config))


# -- which endpoints take part ---------------------------------------------------------------


def test_a_model_is_disaggregated_only_with_a_routable_prefill_and_decode_serving_it() -> None:
    p, d, a = st(ep("p", "prefill")), st(ep("d", "decode")), st(ep("a", None))
    assert is_disaggregated([p, d], "m")
    assert is_disaggregated([p, d, a], "m")
    assert not is_disaggregated([p, d], "other")
    assert not is_disaggregated([d, a], "m")
    assert not is_disaggregated([p, a], "m")
    assert not is_disaggregated([st(ep("p", "prefill", draining=True)), d], "m")
    assert not is_disaggregated([p, st(ep("d", "decode", ready=False))], "m")


def test_prefill_engines_never_answer_clients_while_aggregated_ones_still_do() -> None:
    p, d, a = st(ep("p", "prefill")), st(ep("d", "decode")), st(ep("a", None))
    assert main_states([p, d, a], "m") == [d, a]
    # A vLLM decode engine can compute a prompt itself: it stays without any prefill engine.
    assert main_states([d, a], "m") == [d, a]


def test_sglang_decode_engines_answer_only_while_a_prefill_engine_pairs_with_them() -> None:
    d = st(ep("d", "decode", protocol="sglang"))
    a = st(ep("a", None))
    assert main_states([st(ep("p", "prefill", protocol="sglang")), d, a], "m") == [d, a]
    for unpaired in (
        ep("p", "prefill", protocol="sglang", key="other"),
        ep("p", "prefill", protocol="vllm"),
        ep("p", "prefill", protocol="sglang", draining=True),
        ep("p", "prefill", protocol="sglang", models=("other",)),
    ):
        assert main_states([st(unpaired), d, a], "m") == [a]


@pytest.mark.parametrize(
    ("prefill", "pairs"),
    [
        (ep("p", "prefill"), True),
        (ep("p", "prefill", key="demo-1"), False),  # another ServingGroup's scope
        (ep("p", "prefill", protocol="sglang"), False),  # cannot read vLLM's kv_transfer_params
        (ep("p", "decode"), False),
        (ep("p", None), False),
    ],
)
def test_pairing_needs_the_same_key_and_protocol(prefill: Endpoint, pairs: bool) -> None:
    assert pairable(DECODE, prefill) is pairs
    assert not pairable(prefill, DECODE)  # the order matters: decode is the first argument


# -- whether prefill is used -----------------------------------------------------------------


def test_a_long_uncached_prompt_may_go_to_every_idle_pairable_prefill() -> None:
    p1, p2 = st(ep("p1", "prefill")), st(ep("p2", "prefill"), in_flight=3)
    queued = st(ep("p3", "prefill"), waiting=2)  # two requests of another router ahead
    found = plan([p1, p2, queued, st(DECODE)])
    assert (found.skip, found.candidates) == (None, (p1, p2))


def test_short_prompts_never_reach_prefill_even_with_prefill_idle() -> None:
    p = st(ep("p", "prefill"))
    assert plan([p], tokens=255).skip == "short-prompt"
    assert plan([p], tokens=256).skip is None
    assert plan([p], tokens=999, min_prefill_tokens=1000).skip == "short-prompt"
    assert plan([p], tokens=0, min_prefill_tokens=0).skip is None  # 0: every prompt is prefilled


def test_short_is_counted_before_the_absence_of_prefill() -> None:
    assert plan([], tokens=10).skip == "short-prompt"


def test_prompts_mostly_cached_on_the_decode_engine_skip_prefill() -> None:
    p = st(ep("p", "prefill"))
    assert plan([p], cached=0.8).skip == "cached-on-decode"
    assert plan([p], cached=1.0).skip == "cached-on-decode"
    assert plan([p], cached=0.79).skip is None
    assert plan([p], cached=0.5, max_cached_share=0.5).skip == "cached-on-decode"
    assert plan([p], cached=1.0, max_cached_share=0).skip is None  # 0 turns the rule off


@pytest.mark.parametrize(
    "prefill",
    [
        ep("p", "prefill", key="other"),
        ep("p", "prefill", protocol="sglang"),
        ep("p", "prefill", draining=True),
        ep("p", "prefill", ready=False),
        ep("p", "prefill", models=("other",)),
        ep("p", "decode"),
    ],
)
def test_no_pairable_prefill_leaves_decode_only(prefill: Endpoint) -> None:
    assert plan([st(prefill), st(DECODE)]).skip == "no-pairable-prefill"


def test_prefill_endpoints_that_already_failed_this_request_are_left_out() -> None:
    p1, p2 = st(ep("p1", "prefill")), st(ep("p2", "prefill"))
    found = plan_prefill(DECODE, 0.0, LONG, [p1, p2], "m", PdConfig(), frozenset({"p1"}))
    assert found.candidates == (p2,)
    found = plan_prefill(DECODE, 0.0, LONG, [p1, p2], "m", PdConfig(), frozenset({"p1", "p2"}))
    assert found.skip == "no-pairable-prefill"


@pytest.mark.parametrize(
    "state",
    [st(ep("p", "prefill"), at_capacity=True), st(ep("p", "prefill"), healthy=False)],
)
def test_saturated_prefill_engines_leave_decode_only(state: BackendState) -> None:
    assert plan([state]).skip == "prefill-saturated"
    assert plan([state, st(ep("q", "prefill"))]).candidates == (st(ep("q", "prefill")),)


def test_a_request_count_alone_no_longer_saturates_prefill() -> None:
    # 40 requests waiting of 256 tokens each (their mean as this router sent them): 2.56 s at
    # 4000 tokens/s, under the 1 s bound plus a 8192-token prompt's own 2.05 s.
    p = st(ep("p", "prefill"), waiting=40.0, in_flight=40)
    backlog = PrefillBacklog(mean_tokens=256.0)
    found = plan_prefill(DECODE, 0.0, 8192, [p], "m", PdConfig(), backlogs={"p": backlog})
    assert found.candidates == (p,)


def test_an_unknown_or_broken_queue_reading_adds_no_wait() -> None:
    for waiting in (None, float("nan"), float("inf"), -3.0):
        assert plan([st(ep("p", "prefill"), waiting=waiting, in_flight=31)]).skip is None


# -- the prefill backlog in time -------------------------------------------------------------

RATE = 4000.0  # the prior, tokens/s


def owing(*tokens: int, rate: float | None = None) -> PrefillBacklog:
    """A backlog of steps all sent at time 0 and none begun (another is answered at time 0)."""
    return PrefillBacklog(
        pending=tuple(Pending(i, t, 0.0) for i, t in enumerate(tokens)), last_done=0.0, rate=rate
    )


def test_a_prompt_skips_prefill_when_the_wait_exceeds_the_bound_plus_its_own_prefill() -> None:
    p = st(ep("p", "prefill"))
    # 8000 tokens owed: 2 s. A 2000-token prompt may wait 1 s + 0.5 s: skipped.
    found = plan_prefill(DECODE, 0.0, 2000, [p], "m", PdConfig(), backlogs={"p": owing(8000)})
    assert found.skip == "prefill-backlog"
    # A 4000-token prompt may wait 1 s + 1 s: 2 s is not over it.
    found = plan_prefill(DECODE, 0.0, 4000, [p], "m", PdConfig(), backlogs={"p": owing(8000)})
    assert found.candidates == (p,)
    # A faster learned rate shortens the wait: 8000 tokens at 16000/s is 0.5 s.
    found = plan_prefill(DECODE, 0.0, 2000, [p], "m", PdConfig(), backlogs={"p": owing(8000, rate=16000.0)})
    assert found.candidates == (p,)
    # The bound is configurable.
    config = PdConfig(max_prefill_wait_s=1.6)
    assert plan_prefill(DECODE, 0.0, 2000, [p], "m", config, backlogs={"p": owing(8000)}).skip is None


def test_each_sequence_decoding_there_adds_the_stall_to_the_bound() -> None:
    p = st(ep("p", "prefill"))
    backlogs = {"p": owing(8000)}  # 2 s; a 2000-token prompt is 0.5 s of prefill

    def skip(decode: BackendState) -> str | None:
        return plan_prefill(DECODE, 0.0, 2000, [p, decode], "m", PdConfig(), backlogs=backlogs).skip

    assert skip(st(DECODE)) == "prefill-backlog"  # 1 s + 0.5 s: nobody else to stall
    assert skip(st(DECODE, in_flight=1)) is None  # 1 s + 0.5 s x 2
    assert skip(st(DECODE, running=3.0)) is None  # another router's sequences count too
    # A long prompt almost never lands on a busy decode engine: 32k tokens there stall 8 s each.
    busy = {"p": owing(90000)}  # 22.5 s
    found = plan_prefill(DECODE, 0.0, 32768, [p, st(DECODE, in_flight=2)], "m", PdConfig(), backlogs=busy)
    assert found.candidates == (p,)


def test_time_passing_works_the_oldest_prompt_off() -> None:
    p = st(ep("p", "prefill"))
    backlogs = {"p": owing(8000)}
    assert plan_prefill(DECODE, 0.0, 2000, [p], "m", PdConfig(), backlogs=backlogs, now=0.0).skip
    assert plan_prefill(DECODE, 0.0, 2000, [p], "m", PdConfig(), backlogs=backlogs, now=0.6).skip is None


def test_the_prefill_engine_with_the_least_estimated_wait_is_chosen() -> None:
    p1, p2, p3 = st(ep("p1", "prefill")), st(ep("p2", "prefill")), st(ep("p3", "prefill"), in_flight=1)
    # p1 owes one 32k prompt, p2 three short ones: p2 waits least although it has more requests.
    backlogs = {"p1": owing(32768), "p2": owing(300, 300, 300), "p3": owing(1000)}
    found = plan_prefill(DECODE, 0.0, LONG, [p1, p2, p3], "m", PdConfig(), backlogs=backlogs)
    assert found.candidates == (p2,)
    # Idle engines tie: the policy chooses among them.
    found = plan_prefill(
        DECODE, 0.0, LONG, [p1, st(ep("q", "prefill")), st(ep("r", "prefill"))], "m", PdConfig()
    )
    assert [s.endpoint.name for s in found.candidates] == ["p1", "q", "r"]


def test_another_routers_waiting_requests_count_at_the_mean_prompt() -> None:
    # The engine reports 5 waiting, this router sent 1 of them: 4 more of the mean 1000 tokens.
    p = st(ep("p", "prefill"), waiting=5.0)
    backlog = replace(owing(1000), mean_tokens=1000.0)
    assert (
        plan_prefill(DECODE, 0.0, 300, [p], "m", PdConfig(), backlogs={"p": backlog}).skip
        == "prefill-backlog"
    )
    # Nothing sent here yet: they are assumed as long as the prompt being planned (4 x 300 = 0.3 s).
    p = st(ep("p", "prefill"), waiting=4.0)
    assert plan_prefill(DECODE, 0.0, 300, [p], "m", PdConfig()).skip is None


def test_a_saturated_or_backlogged_engine_leaves_the_choice_to_the_others() -> None:
    busy, free = st(ep("p", "prefill"), at_capacity=True), st(ep("q", "prefill"))
    found = plan_prefill(DECODE, 0.0, LONG, [busy, free], "m", PdConfig(), backlogs={"q": owing(8000)})
    assert found.candidates == (free,)  # the only free one, however long its queue
    found = plan_prefill(DECODE, 0.0, 300, [busy, free], "m", PdConfig(), backlogs={"q": owing(8000)})
    assert found.skip == "prefill-backlog"


def test_the_plan_expects_the_queue_plus_the_prompts_own_prefill_time() -> None:
    # At the prior 4000 tokens/s: 8000 owed (2 s) plus the 4096-token prompt (1.024 s).
    p = st(ep("p", "prefill"))
    found = plan_prefill(DECODE, 0.0, LONG, [p], "m", PdConfig(), backlogs={"p": owing(8000)})
    assert found.skip is None
    assert found.expected_s == pytest.approx(2.0 + 1.024)
    # A learned rate of 8000 tokens/s halves both; an idle engine expects only the prompt.
    fast = replace(owing(8000), rate=8000.0)
    found = plan_prefill(DECODE, 0.0, LONG, [p], "m", PdConfig(), backlogs={"p": fast})
    assert found.expected_s == pytest.approx(1.0 + 0.512)
    assert plan_prefill(DECODE, 0.0, LONG, [p], "m", PdConfig()).expected_s == pytest.approx(1.024)
    # Skipped: nothing is expected of a prefill engine.
    assert plan_prefill(DECODE, 0.0, 100, [p], "m", PdConfig()).expected_s == 0.0


def test_sglang_never_skips_on_backlog_and_queues_where_the_wait_is_least() -> None:
    p = st(ep("p", "prefill", protocol="sglang"))
    q = st(ep("q", "prefill", protocol="sglang"), at_capacity=True)
    backlogs = {"p": owing(90000), "q": owing(1000)}
    found = plan_prefill(SGLANG_DECODE, 0.0, 300, [p], "m", PdConfig(), backlogs=backlogs)
    assert found.candidates == (p,)
    # Every engine saturated: still through the one that waits least.
    p_full = st(ep("p", "prefill", protocol="sglang"), healthy=False)
    found = plan_prefill(SGLANG_DECODE, 0.0, 300, [p_full, q], "m", PdConfig(), backlogs=backlogs)
    assert found.candidates == (q,)


# -- where a prompt computed on a decode engine goes -----------------------------------------


def test_short_prompts_go_to_the_decode_engines_running_the_fewest_sequences() -> None:
    p = st(ep("p", "prefill"))
    d1, d2, d3 = (
        st(ep("d1", "decode"), in_flight=3),
        st(ep("d2", "decode"), in_flight=1),
        st(ep("d3", "decode"), in_flight=1),
    )
    states = [p, d1, d2, d3]
    assert decode_candidates([d1, d2, d3], 100, states, "m", PdConfig()) == [d2, d3]
    # A prompt that goes to prefill leaves the decode-first choice as it was.
    assert decode_candidates([d1, d2, d3], LONG, states, "m", PdConfig()) == [d1, d2, d3]


def test_the_engines_running_count_counts_when_higher_than_this_routers() -> None:
    d1 = st(ep("d1", "decode"), in_flight=1, running=6.0)  # another router's streams
    d2 = st(ep("d2", "decode"), in_flight=2, running=None)
    d3 = st(ep("d3", "decode"), in_flight=2, running=float("nan"))
    assert decode_candidates([d1, d2, d3], 100, [d1, d2, d3], "m", PdConfig()) == [d2, d3]


def test_a_backlogged_prefill_also_narrows_the_decode_choice() -> None:
    p = st(ep("p", "prefill"))
    d1, d2 = st(ep("d1", "decode"), in_flight=2), st(ep("d2", "decode"))
    states = [p, d1, d2]
    backlogs = {"p": owing(40000)}
    assert decode_candidates([d1, d2], LONG, states, "m", PdConfig(), backlogs=backlogs) == [d2]
    assert decode_candidates([d1, d2], LONG, states, "m", PdConfig()) == [d1, d2]


def test_aggregated_engines_compute_every_prompt_and_mixed_sets_are_left_alone() -> None:
    p, a = st(ep("p", "prefill")), st(ep("a", None), in_flight=5)
    d = st(ep("d", "decode"), in_flight=1)
    assert decode_candidates([a, d], 100, [p, a, d], "m", PdConfig()) == [d]
    # d would pair with prefill for a long prompt, a would not: nothing is narrowed.
    assert decode_candidates([a, d], LONG, [p, a, d], "m", PdConfig()) == [a, d]
    assert decode_candidates([], 100, [p], "m", PdConfig()) == []


def test_sglang_decode_engines_are_never_narrowed_for_prefill() -> None:
    p = st(ep("p", "prefill", protocol="sglang"))
    d1, d2 = st(ep("d1", "decode", protocol="sglang"), in_flight=4), st(ep("d2", "decode", protocol="sglang"))
    assert decode_candidates([d1, d2], 100, [p, d1, d2], "m", PdConfig()) == [d1, d2]


def test_only_a_decode_endpoint_is_planned_for() -> None:
    with pytest.raises(ValueError, match="not a decode endpoint"):
        plan_prefill(ep("a", None), 0.0, LONG, [], "m", PdConfig())


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("min_prefill_tokens", -1, "finite number >= 0"),
        ("max_cached_share", 1.5, "at most 1"),
        ("max_cached_share", float("nan"), "finite number"),
        ("max_prefill_wait_s", float("inf"), "finite number"),
        ("max_prefill_wait_s", -1.0, ">= 0"),
        ("prefill_rate_prior", 0.0, "> 0"),
        ("prefill_timeout_s", 0, "> 0"),
    ],
)
def test_bad_settings_are_refused_with_their_name(field: str, value: float, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        PdConfig(**{field: value})  # type: ignore[arg-type]
    assert field in str(info.value)


SGLANG_DECODE = ep("d1", "decode", protocol="sglang")


def test_sglang_requests_are_never_decode_only_while_a_prefill_pairs() -> None:
    # Its decode engine refuses a request without a bootstrap room: short, cached and saturated
    # prompts still go through prefill.
    p = st(ep("p", "prefill", protocol="sglang"))
    busy = st(ep("q", "prefill", protocol="sglang"), at_capacity=True)
    for tokens, cached in ((1, 0.0), (LONG, 1.0)):
        found = plan_prefill(SGLANG_DECODE, cached, tokens, [p, busy], "m", PdConfig())
        assert (found.skip, found.candidates) == (None, (p,))
    found = plan_prefill(SGLANG_DECODE, 0.0, LONG, [busy], "m", PdConfig())
    assert (found.skip, found.candidates) == (None, (busy,))
    found = plan_prefill(SGLANG_DECODE, 0.0, LONG, [st(ep("p", "prefill"))], "m", PdConfig())
    assert found.skip == "no-pairable-prefill"


def test_without_both_roles_every_engine_answers_but_sglang_pd_engines() -> None:
    vp, vd, a = st(ep("vp", "prefill")), st(ep("vd", "decode")), st(ep("a", None))
    sp, sd = st(ep("sp", "prefill", protocol="sglang")), st(ep("sd", "decode", protocol="sglang"))
    assert answering_states([vp, a], "m") == ([vp, a], False)  # a vLLM prefill engine computes whole requests
    assert answering_states([vd, sd, a], "m") == ([vd, a], False)
    assert answering_states([sp, a], "m") == ([a], False)
    assert answering_states([sp, sd, a], "m") == ([sd, a], True)
    assert answering_states([vp, sd, a], "m") == ([a], True)  # split, but the SGLang decode cannot pair
