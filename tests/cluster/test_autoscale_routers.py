"""Two router replicas behind one Service, end to end: two real `phalanx router` processes on
127.0.0.2 and 127.0.0.3 (one port), router pods with those pod IPs behind a Service, a request
held at zero on each, and the operator's autoscaler (pointed at the Service) seeing both held
requests, not the one that a single read through the Service would give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from phalanx.kube.resources import AutoscalingPolicyResource, ModelServingResource
from tests.cluster.controlplane import (
    PHALANX_CRDS,
    ControlPlane,
    free_port,
    install_crds,
    operator_process,
    wait_for,
)
from tests.cluster.routers import router_process
from tests.cluster.servings import MODEL, sim_serving
from tests.cluster.test_autoscale_operator import NOWHERE, policy, status
from tests.cluster.test_router_zero import demand
from tests.component.router.held import ChatInBackground

pytestmark = pytest.mark.cluster

HOSTS = ("127.0.0.2", "127.0.0.3")
SELECTOR = {"app.kubernetes.io/component": "router"}


def router_pod(namespace: str, name: str, ip: str, port: int) -> dict[str, Any]:
    """A router pod no node takes, whose status says it runs at `ip` (a router process does)."""
    container = {"name": "router", "image": "x", "ports": [{"name": "http", "containerPort": port}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": SELECTOR},
        "spec": {"containers": [container], "nodeSelector": {"phalanx.dev/pool": NOWHERE}},
    }


def test_the_requests_held_by_two_routers_behind_a_service_are_added_up(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("autoscale-two-routers")
    cp.client().create(ModelServingResource.from_dict(sim_serving(namespace, "chat", NOWHERE, replicas=0)))
    port = free_port()
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "router", "namespace": namespace}}
    ports = [{"port": 8000, "targetPort": "http"}]
    cp.client().create(from_dict({**service, "spec": {"selector": SELECTOR, "ports": ports}}))
    for index, ip in enumerate(HOSTS):
        name = f"router-{index}"
        cp.client().create(from_dict(router_pod(namespace, name, ip, port)))
        written = {
            "status": {
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        }
        cp.client().patch(Pod.Status, name, written, namespace=namespace, patch_type=PatchType.MERGE)
    with (
        router_process(cp.kubeconfig, [namespace], tmp_path, host=HOSTS[0], port=port) as (_, first),
        router_process(cp.kubeconfig, [namespace], tmp_path, host=HOSTS[1], port=port) as (_, second),
    ):
        both = (first, second)
        wait_for(
            "the model declared", lambda: all(demand(u).get("declared") is True for u in both), timeout=30
        )
        # Held until the test ends: observeOnly starts no group, and no node would take one.
        for url in both:
            ChatInBackground(f"{url}/v1", MODEL, timeout_s=120)
        wait_for("a request held on each", lambda: all(demand(u).get("held") == 1 for u in both), timeout=30)
        metrics = ("--router-metrics-url", f"http://router.{namespace}.svc:8000/metrics")
        with operator_process(cp, namespace, tmp_path, extra_args=metrics):
            watching = policy(namespace, "chat", "chat", observe=True)
            cp.client().create(AutoscalingPolicyResource.from_dict(watching))

            def reason() -> str:
                return str((status(cp, namespace, "chat").get("homogeneousStatus") or {}).get("reason", ""))

            wait_for(
                "a decision that sees the held requests", lambda: "admission queue" in reason(), timeout=30
            )
            assert "2 requests wait in the admission queue" in reason(), reason()
            assert status(cp, namespace, "chat")["homogeneousStatus"]["desiredReplicas"] == 1
        assert all(demand(url).get("held") == 1 for url in both)
