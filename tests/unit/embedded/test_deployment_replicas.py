"""`phalanx apply` of a ModelDeployment under `phalanx up`: the plan's count on creation, and on a
re-apply the count an autoscaler set is kept, while without one the deployment's count wins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from phalanx.embedded.autoscaler import Autoscaler
from phalanx.embedded.control import ControlApi
from phalanx.runtimes.local.runtime import LocalRuntime

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "quickstart-deployment.yaml"
AUTOSCALING = """  autoscaling:
    maxReplicas: 4
    queuePerGroup: 2
"""

POLICY = """
---
apiVersion: serving.phalanx.dev/v1alpha1
kind: AutoscalingPolicy
metadata:
  name: tiny-load
spec:
  metrics: [{name: inflight, targetValue: 2}]
  homogeneousTarget:
    minReplicas: 1
    maxReplicas: 4
    target: {targetRef: {name: tiny}}
"""


def deployment(replicas: int, seed: int = 1, extra: str = "") -> str:
    """examples/quickstart-deployment.yaml at `replicas`, with engine arguments that tell applies apart."""
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"].update(replicas=replicas, engineArgs=["--seed", str(seed)])
    return yaml.safe_dump(manifest) + extra


@dataclass
class Up:
    runtime: LocalRuntime
    autoscaler: Autoscaler


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Up]]:
    daemon = Up(LocalRuntime(tmp_path, gpus=0), Autoscaler(None, ""))  # type: ignore[arg-type]
    client = TestClient(TestServer(ControlApi(daemon).build_app()))  # type: ignore[arg-type]
    await client.start_server()
    try:
        yield client, daemon
    finally:
        await client.close()


async def apply(client: TestClient[Any, Any], text: str) -> None:
    response = await client.post("/v1/apply", json={"text": text, "source": "tiny.yaml"})
    assert response.status == 200, await response.text()


async def scale_to(daemon: Up, replicas: int) -> None:
    """What an autoscaler pass (or `phalanx scale`) does: the stored spec with a new count."""
    ms = await daemon.runtime.get_serving("default", "tiny")
    assert ms is not None
    await daemon.runtime.apply_serving(
        ms.model_copy(update={"spec": ms.spec.model_copy(update={"replicas": replicas})})
    )


async def stored_replicas(daemon: Up) -> int:
    ms = await daemon.runtime.get_serving("default", "tiny")
    assert ms is not None
    return ms.spec.replicas


async def test_without_an_autoscaler_the_deployments_count_takes_effect(up: tuple[Any, Up]) -> None:
    client, daemon = up
    await apply(client, deployment(2))
    assert await stored_replicas(daemon) == 2
    await scale_to(daemon, 3)
    await apply(client, deployment(1))
    assert await stored_replicas(daemon) == 1


@pytest.mark.parametrize("extra", [AUTOSCALING, POLICY], ids=["spec.autoscaling", "AutoscalingPolicy"])
async def test_an_autoscaled_count_survives_a_changed_deployment(up: tuple[Any, Up], extra: str) -> None:
    client, daemon = up
    autoscaling, policy = (extra, "") if extra == AUTOSCALING else ("", extra)
    await apply(client, deployment(2, extra=autoscaling) + policy)
    assert await stored_replicas(daemon) == 2  # created with the plan's count
    await scale_to(daemon, 4)
    await apply(client, deployment(1, seed=7, extra=autoscaling) + policy)
    ms = await daemon.runtime.get_serving("default", "tiny")
    assert ms is not None and ms.spec.replicas == 4
    assert '"--seed","7"' in ms.model_dump_json()  # the rest of the change went in
