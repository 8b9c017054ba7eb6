"""The operator's /metrics on the real control plane: ModelServing and AutoscalingPolicy status as
metrics (docs/observability.md, "Status metrics"), exported by the replica that leads, with the
decision an observe-only policy records counted once."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from phalanx.kube.resources import AutoscalingPolicyResource
from tests.cluster.controlplane import ControlPlane, free_port, operator_process, wait_for
from tests.cluster.test_autoscale_operator import pending_servings, policy, status

pytestmark = pytest.mark.cluster

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("phalanx_modelserving_", "phalanx_autoscaling_"))
    }


def test_the_leader_exports_status_and_counts_a_decision_once(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    namespace = pending_servings(cp, "status-metrics", "watch")
    port = free_port()
    with operator_process(cp, namespace, tmp_path, extra_args=("--health-port", str(port))):
        # minReplicas 1 over a serving at 0: one decision 0 -> 1, observed only.
        watching = policy(namespace, "watch", "watch", low=1, observe=True)
        cp.client().create(AutoscalingPolicyResource.from_dict(watching))
        wait_for(
            "the status written", lambda: "homogeneousStatus" in status(cp, namespace, "watch"), timeout=30
        )
        serving = frozenset({("namespace", namespace), ("modelserving", "watch")})
        target = serving | {("autoscalingpolicy", "watch"), ("role", "")}
        decided = (
            "phalanx_autoscaling_decisions_total",
            target | {("direction", "up"), ("reason", "bounds")},
        )
        found = wait_for("the decision exported", lambda: (s := scrape(port)).get(decided) and s, timeout=30)
        assert found[decided] == 1
        assert found[("phalanx_autoscaling_desired_replicas", target)] == 1
        assert found[("phalanx_autoscaling_current_replicas", target)] == 0
        assert found[("phalanx_autoscaling_panic_mode", target)] == 0
        assert found[("phalanx_modelserving_desired_groups", serving)] == 0  # observe-only: the spec stays
        assert found[("phalanx_modelserving_groups", serving)] == 0
        assert found[("phalanx_modelserving_groups_by_phase", serving | {("phase", "Pending")})] == 0
        time.sleep(2)  # more passes: the same record is not counted again
        assert scrape(port)[decided] == 1
