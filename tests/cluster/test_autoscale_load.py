"""The operator's autoscaler under real load on the real control plane: one group of real
simulator processes (process nodes stand in for a kubelet), the real router in front, clients
keeping more requests in flight than the policy's target, and the operator raising the
ModelServing from 1 to 2 groups, the second group ready and serving, with no request failed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.kube.resources import AutoscalingPolicyResource, ModelServingResource
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.procpods import ProcessKubelet, process_kubelet
from tests.cluster.routers import endpoints, routable_in, router_process
from tests.cluster.servings import available, sim_serving
from tests.cluster.test_autoscale_operator import events, policy, replicas, status
from tests.component.embedded.test_autoscale_up import Load

pytestmark = pytest.mark.cluster


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


def slow_serving(namespace: str, pool: str) -> dict[str, Any]:
    """One group whose engines take 0.05 s a token whatever the batch: requests last seconds."""
    made = sim_serving(namespace, "chat", pool, replicas=1)
    for role in made["spec"]["template"]["roles"]:
        for key in ("entryTemplate", "workerTemplate"):
            container = role[key]["spec"]["containers"][0]
            container["args"] += ["--inter-token-latency", "0.05", "--itl-batch-factor", "0"]
    return made


def test_load_through_the_router_makes_the_operator_add_a_group(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("autoscale-load")
    cp.client().create(ModelServingResource.from_dict(slow_serving(namespace, kubelet.pool(namespace, 1))))
    chosen = policy(namespace, "chat", "chat", low=1)
    chosen["spec"]["metrics"] = [{"name": "inflight", "targetValue": 2}]
    # No scale-down while the second group is checked; one group more a pass at most.
    step = {"instances": 1, "percent": 100, "period": "1s"}
    chosen["spec"]["behavior"] = {
        "scaleUp": {"stablePolicy": step, "panicPolicy": {"percent": 0}},
        "scaleDown": {**step, "stabilizationWindow": "120s"},
    }
    with router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url):
        metrics = ("--router-metrics-url", f"{url}/metrics")
        with operator_process(cp, namespace, tmp_path, extra_args=metrics):
            wait_for("one group available", lambda: available(cp, namespace, "chat", 1), timeout=90)
            wait_for("the router routes to it", lambda: len(routable_in(endpoints(url))) == 1, timeout=30)
            cp.client().create(AutoscalingPolicyResource.from_dict(chosen))
            load = Load(f"{url}/v1", clients=6, max_tokens=60)
            try:
                wait_for("scaled to 2 groups", lambda: replicas(cp, namespace, "chat") == 2, timeout=60)
                wait_for("two groups available", lambda: available(cp, namespace, "chat", 2), timeout=90)

                def busy_groups() -> set[int]:
                    found = endpoints(url).values()
                    return {e["group_index"] for e in found if e["routable"] and e["in_flight"] > 0}

                wait_for("requests in flight on both groups", lambda: busy_groups() == {0, 1}, timeout=30)
            finally:
                load.stop()  # no request failed, none left unanswered
            records = status(cp, namespace, "chat")["homogeneousStatus"]["history"]
            up = [r for r in records if (r["previous"], r["desired"]) == (1, 2)]
            assert up and "inflight" in up[0]["reason"], records
            (scaled,) = events(cp, namespace, "Autoscaled")
            assert scaled.startswith("AutoscalingPolicy chat set replicas 1 -> 2: ")
