"""Routing policies: pure decisions over plain data, in three stages (filter -> score -> pick).

Per request, the router (the imperative shell) does:

    request = routing_request(payload, headers, session_header, max_chars=config.prefix_chars)
    policy = policies.policy(request.policy)          # ValueError -> 400 with the valid names
    found = candidates(states, request.model, tried)  # filter: routable, serves it, healthy
    decision = policy.choose(request, found.available, now)
    # None: nothing available. Queue if `found.saturated`, else 503 (or fail open on `ejected`).
    policies.record(request, decision.endpoint, now)  # right after sending, before awaiting

with `policies = PolicySet(config, default)` kept for the router's lifetime and `now` from
`time.monotonic()`. Interface:

- `BackendState(endpoint, in_flight, waiting, running, kv_cache_usage, healthy, at_capacity)`:
  one backend at decision time. Engine figures are None when unknown or stale.
- `RoutingRequest(model, prefix_text, session, policy, cache_salt)` and
  `routing_request(payload, headers, session_header) -> RoutingRequest`.
- `candidates(states, model, excluded) -> Candidates(available, saturated, ejected)`.
- `Policy`: `name`, `choose(request, available, now) -> Decision | None`,
  `record(request, chosen, now) -> None`. `choose` advances cheap cursors (round-robin, tie
  breaks); `record` learns (the prefix index). Memory is bounded (`PolicyConfig`).
- `Decision(endpoint, policy, reason, prefix_match)`: `reason` is a fixed vocabulary
  (`base.Reason`) for metric labels; `str(decision)` is the log form.
- `make_policy(name, config, rng) -> Policy`, `POLICY_NAMES`, `PolicySet`.

Policies (`POLICY_NAMES`):

- `round-robin`; `least-in-flight` (ties round-robin by name, as `balancer.choose`);
  `power-of-two` (two random candidates, fewer in-flight + waiting wins; seeded `random.Random`);
  `session` (rendezvous hashing of the `x-session-id` header or the body's `user`; none:
  least-in-flight);
- `queue-kv`, `prefix-cache`, `auto`: one cost formula (`scored.py`) with load (in-flight plus
  `vllm:num_requests_waiting`), KV usage (`vllm:kv_cache_usage_perc`), prefix match (chained
  hashes of 128-character blocks, `prefix.py`) and session terms, behind a balance guard.
  `queue-kv` has the load and KV terms, `prefix-cache` adds the prefix term, `auto` adds the
  session term.

The default, `auto`, until a benchmark says otherwise. Prefix affinity is where routing gains
most on LLM traffic: a hit skips prefill of the shared part of the prompt, and every published
comparison (Dynamo's KV router, llm-d, AIBrix) credits it with the large TTFT wins over load
balancing alone. Load terms keep it from piling one prefix on one engine, with the guard as the
hard stop; the router's own in-flight count is always fresh, the engine's waiting queue and KV
usage add load that arrives by other paths and the pressure in-flight counts cannot see. The
session term (a third of a full prefix hit) keeps a conversation on one engine when the index
cannot help: after its entries expire, and across router replicas, each of which sees only its
own share of the traffic while rendezvous hashing is the same in all of them. Without a session
`auto` routes exactly as `prefix-cache`. The weights are in `PolicyConfig`, argued there.
"""

from phalanx.router.policies.base import Decision, Policy, Reason
from phalanx.router.policies.config import PolicyConfig
from phalanx.router.policies.prefix import PrefixIndex
from phalanx.router.policies.registry import (
    DEFAULT_POLICY,
    POLICY_NAMES,
    PolicySet,
    make_policy,
    unknown_policy_message,
)
from phalanx.router.policies.request import (
    MAX_PREFIX_CHARS,
    POLICY_HEADER,
    SESSION_HEADER,
    RoutingRequest,
    prompt_text,
    routing_request,
)
from phalanx.router.policies.state import BackendState, Candidates, candidates

__all__ = [
    "DEFAULT_POLICY",
    "MAX_PREFIX_CHARS",
    "POLICY_HEADER",
    "POLICY_NAMES",
    "SESSION_HEADER",
    "BackendState",
    "Candidates",
    "Decision",
    "Policy",
    "PolicyConfig",
    "PolicySet",
    "PrefixIndex",
    "Reason",
    "RoutingRequest",
    "candidates",
    "make_policy",
    "prompt_text",
    "routing_request",
    "unknown_policy_message",
]
