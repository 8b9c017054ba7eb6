"""The prefill/decode decisions: which endpoints take part, and when a request skips prefill."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies import BackendState
from phalanx.router.policies.pd import (
    PdConfig,
    answering_states,
    is_disaggregated,
    main_states,
    pairable,
    plan_prefill,
)

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


def test_a_long_uncached_prompt_may_go_to_every_free_pairable_prefill() -> None:
    p1, p2 = st(ep("p1", "prefill")), st(ep("p2", "prefill"), in_flight=3, waiting=2)
    found = plan([p1, p2, st(DECODE)])
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
    [
        st(ep("p", "prefill"), at_capacity=True),
        st(ep("p", "prefill"), healthy=False),
        st(ep("p", "prefill"), waiting=32.0),
        st(ep("p", "prefill"), waiting=30.0, in_flight=2),
        st(ep("p", "prefill"), in_flight=32),
    ],
)
def test_saturated_prefill_engines_leave_decode_only(state: BackendState) -> None:
    assert plan([state]).skip == "prefill-saturated"
    assert plan([state, st(ep("q", "prefill"))]).candidates == (st(ep("q", "prefill")),)


def test_an_unknown_or_broken_queue_reading_does_not_saturate() -> None:
    for waiting in (None, float("nan"), float("inf")):
        assert plan([st(ep("p", "prefill"), waiting=waiting, in_flight=31)]).skip is None


def test_only_a_decode_endpoint_is_planned_for() -> None:
    with pytest.raises(ValueError, match="not a decode endpoint"):
        plan_prefill(ep("a", None), 0.0, LONG, [], "m", PdConfig())


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("min_prefill_tokens", -1, "finite number >= 0"),
        ("max_cached_share", 1.5, "at most 1"),
        ("max_cached_share", float("nan"), "finite number"),
        ("max_prefill_waiting", float("inf"), "finite number"),
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
