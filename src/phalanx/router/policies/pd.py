"""Prefill/decode disaggregation: which endpoints take part, and whether a request uses prefill.

Pure functions over `BackendState`s. A model is served disaggregated when its routable
endpoints include both a prefill and a decode engine. Then, per request:

1. decode first: the router's policy chooses among the decode and aggregated endpoints
   (`main_states`: prefill engines never answer a client themselves), on load, KV usage and the
   prefix the chosen one is believed to hold; an aggregated one serves the request whole;
2. `plan_prefill` decides whether the prompt goes through a prefill engine at all (short
   prompts and prompts mostly cached on the chosen decode engine are cheaper computed there;
   no pairable or no unsaturated prefill engine leaves decode-only), and among which prefill
   endpoints (same pair key and protocol as the decode one), where the policy chooses again
   (prefix cache, queue).

An SGLang decode engine cannot compute a prompt itself (a request without a bootstrap room is
refused), so it is never decode-only: it is a candidate only while a pairable prefill engine is
routable, and its requests always go through one, saturated or not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies.state import BackendState

# Why a request skipped prefill; a fixed vocabulary, safe as a metric label.
SkipReason = Literal[
    "short-prompt",  # fewer prompt tokens than the threshold: computing them on decode is cheaper
    "cached-on-decode",  # the chosen decode engine is believed to hold most of the prompt
    "no-pairable-prefill",  # no routable prefill engine with the decode engine's pair key and protocol
    "prefill-saturated",  # every pairable prefill engine is at its cap, ejected or queued too deep
]


@dataclass(frozen=True)
class PdConfig:
    """When a request skips prefill, and how long prefill may take.

    `min_prefill_tokens`: prompts shorter than this (the router's estimate, characters / 4) are
    prefilled on the decode engine. The default is where, on the simulator with a busy decode
    engine, the prefill path's TTFT penalty falls to about 10% (docs/router.md, "The short-prompt
    threshold, measured"); 0 sends every prompt through prefill.
    `max_cached_share`: a prompt whose share believed cached on the chosen decode engine is at
    least this skips prefill (only the rest would be computed there; 0 turns this off).
    `max_prefill_waiting`: a prefill engine with this many requests waiting
    (`vllm:num_requests_waiting`) plus in flight from this router counts as saturated.
    `prefill_timeout_s`: the whole prefill step, after which a vLLM request falls back to
    decode-only (an SGLang one is retried on another pair).
    """

    min_prefill_tokens: int = 256
    max_cached_share: float = 0.8
    max_prefill_waiting: float = 32.0
    prefill_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"PdConfig.{f.name} must be a finite number >= 0, got {value!r}")
        if self.max_cached_share > 1:
            raise ValueError(f"PdConfig.max_cached_share must be at most 1, got {self.max_cached_share!r}")
        if self.prefill_timeout_s <= 0:
            raise ValueError(f"PdConfig.prefill_timeout_s must be > 0, got {self.prefill_timeout_s!r}")


def is_disaggregated(states: Sequence[BackendState], model: str) -> bool:
    """Some routable endpoint serving `model` is a prefill engine and some is a decode engine."""
    roles = {s.endpoint.pd_role for s in states if s.endpoint.routable and model in s.endpoint.models}
    return "prefill" in roles and "decode" in roles


def main_states(states: Sequence[BackendState], model: str) -> list[BackendState]:
    """The endpoints a client's request may be answered by: decode and aggregated engines, less
    SGLang decode engines that no routable prefill engine of the model pairs with."""
    prefills = [s.endpoint for s in states if s.endpoint.pd_role == "prefill" and s.endpoint.routable]
    return [
        s
        for s in states
        if s.endpoint.pd_role != "prefill"
        and not (
            s.endpoint.pd_role == "decode"
            and s.endpoint.pd_protocol == "sglang"
            and not any(model in p.models and pairable(s.endpoint, p) for p in prefills)
        )
    ]


def answering_states(states: Sequence[BackendState], model: str) -> tuple[list[BackendState], bool]:
    """The endpoints that may answer a request for `model`, and whether it is disaggregated.

    Disaggregated: `main_states`. Otherwise every endpoint serves whole requests (a vLLM prefill
    or decode engine computes a prompt as any engine does) except SGLang PD engines, which refuse
    a request without a bootstrap room."""
    if is_disaggregated(states, model):
        return main_states(states, model), True
    return [s for s in states if s.endpoint.pd_role is None or s.endpoint.pd_protocol != "sglang"], False


def pairable(decode: Endpoint, prefill: Endpoint) -> bool:
    """A prefill engine can hand its KV cache to this decode engine."""
    return (
        prefill.pd_role == "prefill"
        and decode.pd_role == "decode"
        and prefill.pd_pair_key == decode.pd_pair_key
        and prefill.pd_protocol == decode.pd_protocol
    )


@dataclass(frozen=True, slots=True)
class PrefillPlan:
    """`skip` None: choose a prefill engine among `candidates` (never empty then)."""

    candidates: tuple[BackendState, ...] = ()
    skip: SkipReason | None = None


def _saturated(state: BackendState, config: PdConfig) -> bool:
    if not state.healthy or state.at_capacity:
        return True
    waiting = state.waiting if state.waiting is not None and math.isfinite(state.waiting) else 0.0
    return waiting + state.in_flight >= config.max_prefill_waiting


def plan_prefill(
    decode: Endpoint,
    cached_share: float,
    prompt_tokens: int,
    states: Sequence[BackendState],
    model: str,
    config: PdConfig,
    excluded: frozenset[str] = frozenset(),
) -> PrefillPlan:
    """Whether a request going to `decode` is prefilled elsewhere, and where it may be.

    `cached_share` is the share of the prompt the policy believes `decode` holds (its decision's
    prefix match); `states` every endpoint of the model; `excluded` prefill endpoints that
    already failed this request. The cheap reasons come first, so a short prompt is counted as
    short even when no prefill engine is up.
    """
    if decode.pd_role != "decode":
        raise ValueError(f"{decode.name} is not a decode endpoint")
    must = decode.pd_protocol == "sglang"  # no decode-only with SGLang
    if prompt_tokens < config.min_prefill_tokens and not must:
        return PrefillPlan(skip="short-prompt")
    if cached_share >= config.max_cached_share > 0 and not must:
        return PrefillPlan(skip="cached-on-decode")
    pairs = [
        s
        for s in states
        if s.endpoint.routable
        and model in s.endpoint.models
        and s.endpoint.name not in excluded
        and pairable(decode, s.endpoint)
    ]
    if not pairs:
        return PrefillPlan(skip="no-pairable-prefill")
    free = tuple(s for s in pairs if not _saturated(s, config))
    if not free:
        return PrefillPlan(candidates=tuple(pairs)) if must else PrefillPlan(skip="prefill-saturated")
    return PrefillPlan(candidates=free)
