"""Requests in flight at an engine, read from its own `/metrics` page: pure functions.

The operator's drain asks the draining entry pods themselves, since no router tells it: vLLM
(and `phalanx sim`) export `vllm:num_requests_running` and `vllm:num_requests_waiting`, SGLang
`sglang:num_running_reqs` and `sglang:num_queue_reqs`. Running plus waiting is what the engine
still owes its clients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from phalanx.router.pods import endpoint_from_pod

# Running and queued requests, per engine; samples are summed over label sets (several models).
REQUEST_GAUGES: frozenset[str] = frozenset(
    {
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "sglang:num_running_reqs",
        "sglang:num_queue_reqs",
    }
)


def requests_in_flight(text: str) -> int | None:
    """Running plus waiting requests on one page; None when it has none of the gauges or is not
    Prometheus text (an unreadable page is unknown, never idle)."""
    try:
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, IndexError, KeyError, TypeError):
        return None
    values = [s.value for s in samples if s.name in REQUEST_GAUGES and math.isfinite(s.value)]
    if not values:
        return None
    return max(round(sum(values)), 0)


def metrics_url(pod: Mapping[str, Any]) -> str | None:
    """The engine's `/metrics` on an entry pod, at the address the router sends requests to (pod IP,
    serving port); None while the pod has no address."""
    endpoint = endpoint_from_pod(pod)
    return f"{endpoint.url}/metrics" if endpoint is not None else None
