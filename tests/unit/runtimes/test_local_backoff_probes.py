from __future__ import annotations

import pytest

from phalanx.runtimes.local.backoff import BackoffPolicy, RestartBackoff
from phalanx.runtimes.local.env import ConfigError
from phalanx.runtimes.local.probes import ProbeSpec, ProbeState, parse_probe


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run() -> None:
    backoff = RestartBackoff(BackoffPolicy(base=1.0, cap=8.0, reset_after=60.0))
    assert [backoff.next_delay(0.1) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.next_delay(61.0) == 1.0
    assert backoff.next_delay(5.0) == 2.0


def test_readiness_needs_success_threshold_in_a_row() -> None:
    state = ProbeState(ProbeSpec(action="tcpSocket", success_threshold=2, failure_threshold=2), "readiness")
    assert state.result is False
    assert not state.observe(True)
    assert not state.observe(False)  # the run of successes is broken
    assert not state.observe(True)
    assert state.observe(True) and state.result is True
    assert not state.observe(False)
    assert state.observe(False) and state.result is False


def test_liveness_passes_until_failure_threshold_failures_in_a_row() -> None:
    state = ProbeState(ProbeSpec(action="exec", failure_threshold=3), "liveness")
    assert state.result is True
    state.observe(False)
    state.observe(False)
    state.observe(True)
    state.observe(False)
    state.observe(False)
    assert state.result is True
    assert state.observe(False) and state.result is False


def test_startup_is_undecided_until_it_passes_or_fails() -> None:
    state = ProbeState(ProbeSpec(action="exec", failure_threshold=2), "startup")
    assert state.result is None
    state.observe(False)
    assert state.result is None
    state.observe(False)
    assert state.result is False


def test_parse_probe_defaults_and_named_ports() -> None:
    container = {"name": "engine", "ports": [{"name": "http", "containerPort": 8000}]}
    spec = parse_probe({"httpGet": {"path": "/health", "port": "http"}}, container, "readiness")
    assert (spec.action, spec.port, spec.path) == ("httpGet", 8000, "/health")
    assert (spec.period, spec.timeout, spec.success_threshold, spec.failure_threshold) == (10.0, 1.0, 1, 3)
    liveness = parse_probe({"tcpSocket": {"port": 9}, "successThreshold": 5}, container, "liveness")
    assert liveness.success_threshold == 1  # Kubernetes requires 1 for liveness


def test_parse_probe_rejects_what_cannot_run_locally() -> None:
    with pytest.raises(ConfigError, match="not a declared port"):
        parse_probe({"httpGet": {"port": "metrics"}}, {"name": "c"}, "readiness")
    with pytest.raises(ConfigError, match="grpc"):
        parse_probe({"grpc": {"port": 9}}, {"name": "c"}, "liveness")
