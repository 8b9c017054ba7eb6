"""Per-API-key usage metrics: labelled by the key's name, bounded, counted from the engine's usage."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from phalanx.router.metrics import KEY_LABELS_MAX, OTHER_KEYS, UNAUTHENTICATED, KeyUsage
from phalanx.router.usage import Usage


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_requests_and_tokens_by_key_name() -> None:
    registry = CollectorRegistry()
    keys = KeyUsage(registry)
    keys.record("team-a", 200, Usage(10, 5))
    keys.record("team-a", 200, Usage(3, 2))
    keys.record("team-a", 429, None)
    keys.record(None, 401, None)
    keys.record(None, 200, Usage(1, 1))
    assert value(registry, "phalanx_router_key_requests_total", key="team-a", code_class="2xx") == 2
    assert value(registry, "phalanx_router_key_requests_total", key="team-a", code_class="4xx") == 1
    assert value(registry, "phalanx_router_key_prompt_tokens_total", key="team-a") == 13
    assert value(registry, "phalanx_router_key_completion_tokens_total", key="team-a") == 7
    assert value(registry, "phalanx_router_key_requests_total", key=UNAUTHENTICATED, code_class="4xx") == 1
    assert value(registry, "phalanx_router_key_prompt_tokens_total", key=UNAUTHENTICATED) == 1


def test_keys_past_the_cap_share_one_label() -> None:
    registry = CollectorRegistry()
    keys = KeyUsage(registry)
    for i in range(KEY_LABELS_MAX + 50):
        keys.record(f"key-{i}", 200, None)
    labels = {s.labels["key"] for m in registry.collect() for s in m.samples if "key" in s.labels}
    assert OTHER_KEYS in labels
    assert len(labels) <= KEY_LABELS_MAX + 1
    assert keys.label("key-0") == "key-0"  # the first ones keep their names
    assert value(registry, "phalanx_router_key_requests_total", key=OTHER_KEYS, code_class="2xx") >= 50
    assert keys.label(None) == UNAUTHENTICATED  # always its own label, whatever the cap
