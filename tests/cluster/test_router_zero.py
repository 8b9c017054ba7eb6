"""`phalanx router` at zero groups on the real control plane: it learns the model from a ModelServing
scaled to zero (as the API server stores it), holds a request for it, and serves it once the
operator has started the first group after a scale-up. Real engines on process nodes."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.kube.resources import ModelServingResource
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds, operator_process, wait_for
from tests.cluster.procpods import ProcessKubelet, process_kubelet
from tests.cluster.routers import router_process
from tests.cluster.servings import MODEL, merge_patch, sim_serving
from tests.component.router.held import ChatInBackground

pytestmark = pytest.mark.cluster


@pytest.fixture
def kubelet(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ProcessKubelet]:
    with process_kubelet(control_plane, tmp_path) as running:
        yield running


def demand(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/debug/demand", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return next((m for m in body["models"] if m["model"] == MODEL), {})


def test_a_request_at_zero_groups_waits_for_the_first_group_the_operator_starts(
    control_plane: ControlPlane, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    cp = control_plane
    install_crds(cp.client(), PHALANX_CRDS)
    namespace = cp.new_namespace("zero")
    manifest = sim_serving(namespace, "chat", kubelet.pool(namespace, 1), replicas=0)
    cp.client().create(ModelServingResource.from_dict(manifest))
    with (
        router_process(cp.kubeconfig, [namespace], tmp_path) as (_, url),
        operator_process(cp, namespace, tmp_path),
    ):
        wait_for("the model declared", lambda: demand(url).get("declared") is True, timeout=30)
        chat = ChatInBackground(f"{url}/v1", MODEL, timeout_s=150)
        wait_for("the request held", lambda: demand(url).get("held") == 1, timeout=30)
        merge_patch(cp, namespace, "chat", {"spec": {"replicas": 1}})
        assert chat.answer()
        after = demand(url)
        assert (after["held"], after["waiting"], after["routable_endpoints"]) == (0, 0, 1)
