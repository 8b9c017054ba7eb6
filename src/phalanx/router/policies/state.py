"""What a policy sees of each backend, the filter stage, and the load signals derived from it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass

from phalanx.router.endpoints import Endpoint


@dataclass(frozen=True, slots=True)
class BackendState:
    """One endpoint as the router sees it at the moment of a decision.

    `in_flight` is the router's own count and is never stale. The engine's figures
    (`vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc` as a
    fraction in 0..1) are None when unknown or too old: the scraper decides staleness, the
    policies treat None as "no information", never as zero. No policy reads `running` yet: the
    in-flight count covers what this router sent, and waiting is what delays a new request.
    """

    endpoint: Endpoint
    in_flight: int = 0
    waiting: float | None = None
    running: float | None = None
    kv_cache_usage: float | None = None
    # False: ejected by outlier detection.
    healthy: bool = True
    # The router's per-backend concurrency cap is reached: a request must wait for it.
    at_capacity: bool = False


Backends = Sequence[BackendState]


@dataclass(frozen=True, slots=True)
class Candidates:
    """The filter stage's answer.

    `available` may be picked from. `saturated` could serve the model but are at capacity: when
    `available` is empty and `saturated` is not, queue the request rather than reject it.
    `ejected` are healthy in every other respect but ejected by outlier detection: when they
    are all that is left, failing open (trying one) may beat refusing.
    """

    available: list[BackendState]
    saturated: list[BackendState]
    ejected: list[BackendState]


def candidates(states: Iterable[BackendState], model: str, excluded: Set[str] = frozenset()) -> Candidates:
    """Backends that may take a request for `model`: routable (ready, not draining), serving it,
    not `excluded` by name (endpoints already tried), split by health and capacity."""
    available: list[BackendState] = []
    saturated: list[BackendState] = []
    ejected: list[BackendState] = []
    for state in states:
        ep = state.endpoint
        if not ep.routable or model not in ep.models or ep.name in excluded:
            continue
        if not state.healthy:
            ejected.append(state)
        elif state.at_capacity:
            saturated.append(state)
        else:
            available.append(state)
    return Candidates(available, saturated, ejected)


_INF = float("inf")


def _imputed(values: Sequence[float | None]) -> list[float]:
    """Unknown values become the mean of the known ones: a backend whose metrics are stale is
    neither favoured nor shunned for it. With nothing known, every value is 0 and the term
    drops out of any comparison. NaN, infinity and negative gauges (a broken scrape) count as
    unknown."""
    known = [v for v in values if v is not None and 0 <= v < _INF]
    if len(known) == len(values):
        return known
    fill = sum(known) / len(known) if known else 0.0
    return [v if v is not None and 0 <= v < _INF else fill for v in values]


def loads(available: Sequence[BackendState]) -> list[float]:
    """Requests at each backend: the router's in-flight count plus the engine's waiting queue.

    A request waiting at the engine is counted twice when this router sent it; that is on
    purpose, as a queued request delays everything behind it while a running one shares the
    batch. Without the metric this is the in-flight count alone.
    """
    out: list[float] = []
    for state in available:  # one pass while every figure is usable, as it is on a healthy fleet
        w = state.waiting
        if w is None or not 0 <= w < _INF:
            break
        out.append(state.in_flight + w)
    else:
        return out
    waiting = _imputed([s.waiting for s in available])
    return [s.in_flight + w for s, w in zip(available, waiting, strict=True)]


def kv_usages(available: Sequence[BackendState]) -> list[float]:
    """KV cache usage per backend, clamped to 0..1, then unknown ones imputed (see `_imputed`)."""
    usage = [s.kv_cache_usage for s in available]
    # `not u > 1` keeps NaN, so that it is imputed rather than read as full.
    return _imputed([u if u is None or not u > 1.0 else 1.0 for u in usage])


def kv_term(available: Sequence[BackendState]) -> list[float] | None:
    """`kv_usages`, or None when every value would be 0.0 (nothing reported, or no KV cache in
    use anywhere): a term that adds nothing to any cost."""
    out: list[float] = []
    used = False
    for state in available:  # one pass while every figure is usable
        u = state.kv_cache_usage
        if u is None or not u >= 0:  # unknown, NaN or negative: imputed
            values = kv_usages(available)
            return values if any(values) else None
        u = min(u, 1.0)
        used = used or u > 0
        out.append(u)
    return out if used else None
