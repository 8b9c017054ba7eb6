"""Prefill/decode disaggregation: which endpoints take part, and whether a request uses prefill.

Pure functions over `BackendState`s. A model is served disaggregated when its routable
endpoints include both a prefill and a decode engine. Then, per request:

1. decode first: the router's policy chooses among the decode and aggregated endpoints
   (`main_states`: prefill engines never answer a client themselves), on load, KV usage and the
   prefix the chosen one is believed to hold; an aggregated one serves the request whole;
2. `plan_prefill` decides whether the prompt goes through a prefill engine at all (short
   prompts and prompts mostly cached on the chosen decode engine are cheaper computed there;
   no pairable prefill engine, or only ones whose backlog would make the prompt wait too long,
   leaves decode-only), and among which prefill endpoints: those with the least estimated wait
   (`pdbacklog`) among the ones with the decode engine's pair key and protocol, where the policy
   chooses again (prefix cache, queue).

A prompt prefilled on a decode engine stalls every sequence decoding there for its prefill step,
so when every decode candidate would prefill it itself, `decode_candidates` narrows the first
choice to the ones running the fewest sequences.

An SGLang decode engine cannot compute a prompt itself (a request without a bootstrap room is
refused), so it is never decode-only: it is a candidate only while a pairable prefill engine is
routable, and its requests always go through one, saturated or not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Final, Literal

from phalanx.router.endpoints import Endpoint
from phalanx.router.policies.pdbacklog import PrefillBacklog, estimated_wait, rate_or
from phalanx.router.policies.state import BackendState

# Why a request skipped prefill; a fixed vocabulary, safe as a metric label.
SkipReason = Literal[
    "short-prompt",  # fewer prompt tokens than the threshold: computing them on decode is cheaper
    "cached-on-decode",  # the chosen decode engine is believed to hold most of the prompt
    "no-pairable-prefill",  # no routable prefill engine with the decode engine's pair key and protocol
    "prefill-saturated",  # every pairable prefill engine is at its admission cap or ejected
    "prefill-backlog",  # every pairable prefill engine's estimated wait is over the bound
]

NO_BACKLOGS: Final[Mapping[str, PrefillBacklog]] = MappingProxyType({})


@dataclass(frozen=True)
class PdConfig:
    """When a request skips prefill, and how long prefill may take.

    `min_prefill_tokens`: prompts shorter than this (the router's estimate, characters / 4) are
    prefilled on the decode engine. The default is where, on the simulator with a busy decode
    engine, the prefill path's TTFT penalty falls to about 10% (docs/router.md, "The short-prompt
    threshold, measured"); 0 sends every prompt through prefill.
    `max_cached_share`: a prompt whose share believed cached on the chosen decode engine is at
    least this skips prefill (only the rest would be computed there; 0 turns this off).
    `max_prefill_wait_s`: a prompt skips prefill when the least estimated wait at a pairable
    prefill engine (`pdbacklog.estimated_wait`) is more than this plus its own prefill time (at
    that engine's rate) once for itself and once for every sequence decoding at the decode
    engine: prefilled there, it stalls each of them for about that long. So a short prompt skips
    a long queue, a long prompt almost never lands on a busy decode engine. The default, 1 s, is
    about when a person notices the wait for a first token (docs/router.md).
    `prefill_rate_prior`: tokens per second assumed for a prefill engine until one of its steps
    is answered. The default, 4000, is the simulator's default latency model (0.25 ms per
    token); engines on real accelerators are faster, and a low guess only skips prefill sooner
    until the first answer replaces it.
    `prefill_timeout_s`: how long a prefill step may run past its expected time (the estimated
    queue at that engine plus the prompt's own prefill time, `PrefillPlan.expected_s`) before a
    vLLM request falls back to decode-only (an SGLang one is retried on another pair).
    """

    min_prefill_tokens: int = 256
    max_cached_share: float = 0.8
    max_prefill_wait_s: float = 1.0
    prefill_rate_prior: float = 4000.0
    prefill_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"PdConfig.{f.name} must be a finite number >= 0, got {value!r}")
        if self.max_cached_share > 1:
            raise ValueError(f"PdConfig.max_cached_share must be at most 1, got {self.max_cached_share!r}")
        for name in ("prefill_timeout_s", "prefill_rate_prior"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PdConfig.{name} must be > 0, got {getattr(self, name)!r}")


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
    """`skip` None: choose a prefill engine among `candidates` (never empty then).

    `expected_s`: how long the prefill step is expected to take there (the estimated queue plus
    the prompt's own prefill time at the engine's rate). The prefill timeout runs beyond it, so
    a step that is merely queued behind known work is not given up on (its KV would then be
    computed on the decode engine after all, having waited for nothing)."""

    candidates: tuple[BackendState, ...] = ()
    skip: SkipReason | None = None
    expected_s: float = 0.0


def _free(state: BackendState) -> bool:
    return state.healthy and not state.at_capacity


def plan_prefill(
    decode: Endpoint,
    cached_share: float,
    prompt_tokens: int,
    states: Sequence[BackendState],
    model: str,
    config: PdConfig,
    excluded: frozenset[str] = frozenset(),
    *,
    backlogs: Mapping[str, PrefillBacklog] = NO_BACKLOGS,
    now: float = 0.0,
) -> PrefillPlan:
    """Whether a request going to `decode` is prefilled elsewhere, and where it may be.

    `cached_share` is the share of the prompt the policy believes `decode` holds (its decision's
    prefix match); `states` every endpoint of the model; `excluded` prefill endpoints that
    already failed this request; `backlogs` what each prefill endpoint owes this router (absent:
    nothing, at the prior rate) at time `now`. The cheap reasons come first, so a short prompt
    is counted as short even when no prefill engine is up.
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
    free = [s for s in pairs if _free(s)]
    if not free and not must:
        return PrefillPlan(skip="prefill-saturated")
    waits: list[tuple[float, BackendState]] = []
    for s in free or pairs:
        backlog = backlogs.get(s.endpoint.name, PrefillBacklog())
        waits.append((estimated_wait(backlog, s.waiting, now, config.prefill_rate_prior, prompt_tokens), s))
    least = min(wait for wait, _ in waits)
    rate = min(
        rate_or(backlogs.get(s.endpoint.name, PrefillBacklog()), config.prefill_rate_prior)
        for wait, s in waits
        if wait == least
    )
    own = prompt_tokens / rate
    if not must:
        # Prefilled here, the prompt's own prefill time is spent by this request and again, as a
        # stall, by every sequence decoding here: the wait saved must outweigh all of it.
        here = next((sequences(s) for s in states if s.endpoint.name == decode.name), 0.0)
        if least > config.max_prefill_wait_s + own * (1 + here):
            return PrefillPlan(skip="prefill-backlog")
    return PrefillPlan(candidates=tuple(s for wait, s in waits if wait == least), expected_s=least + own)


def sequences(state: BackendState) -> float:
    """Sequences at an engine: this router's in-flight requests there, or the engine's running
    count when that is higher (another router's requests; unknown or broken: not counted)."""
    running = state.running
    known = running is not None and math.isfinite(running) and running > 0
    return max(float(state.in_flight), running if known and running is not None else 0.0)


def decode_candidates(
    available: Sequence[BackendState],
    prompt_tokens: int,
    states: Sequence[BackendState],
    model: str,
    config: PdConfig,
    *,
    backlogs: Mapping[str, PrefillBacklog] = NO_BACKLOGS,
    now: float = 0.0,
) -> list[BackendState]:
    """The decode-first choice's candidates for a disaggregated model's request.

    When every one of `available` would compute the prompt itself (an aggregated engine, or a
    decode engine for which `plan_prefill` skips prefill; the prefix cache is not known before
    the choice and counts as none), the prefill step stalls whatever decodes there: only those
    running the fewest sequences are kept. Otherwise all of them."""

    def local(state: BackendState) -> bool:
        ep = state.endpoint
        if ep.pd_role != "decode":
            return True
        found = plan_prefill(ep, 0.0, prompt_tokens, states, model, config, backlogs=backlogs, now=now)
        return found.skip is not None

    if not available or not all(local(s) for s in available):
        return list(available)
    fewest = min(sequences(s) for s in available)
    return [s for s in available if sequences(s) == fewest]
