"""A big pass leaves the event loop free: the pure core runs in a thread, so watches keep being read."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from typing import Any

from phalanx.api.modelserving import ModelServing, ModelServingStatus
from phalanx.controller import desired
from phalanx.controller.actions import Event
from phalanx.controller.observed import format_time
from phalanx.controller.revision import revision_object
from phalanx.runtimes.reconciler import Reconciler

GROUPS = 1000
Object = dict[str, Any]


class SteadyRuntime:
    """Every group exists and every pod is ready: a steady pass, all decision and no writes."""

    def __init__(self, ms: ModelServing) -> None:
        self.objects: dict[str, list[Object]] = {}
        for obj in desired.steady_state(ms):
            obj["metadata"]["creationTimestamp"] = format_time(time.time() - 60)
            if obj["kind"] == "Pod":
                obj["spec"]["nodeName"] = "node"
                obj["status"] = {
                    "phase": "Running",
                    "podIP": "10.0.0.1",
                    "conditions": [
                        {"type": "Ready", "status": "True"},
                        {"type": "PodScheduled", "status": "True"},
                    ],
                }
            self.objects.setdefault(obj["kind"], []).append(obj)
        self.objects["ControllerRevision"] = [revision_object(ms)]
        self.writes = 0

    async def list_objects(self, kind: str, namespace: str, selector: Mapping[str, str]) -> list[Object]:
        return self.objects.get(kind, [])

    async def create(self, obj: Object) -> None:
        self.writes += 1

    async def apply(self, obj: Object) -> None:
        self.writes += 1

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.writes += 1

    async def annotate(
        self, kind: str, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        self.writes += 1

    async def record_event(self, namespace: str, serving: str, event: Event) -> None: ...

    async def list_servings(self) -> list[ModelServing]:
        return []

    async def write_status(self, namespace: str, name: str, status: ModelServingStatus) -> None: ...

    def served_gangs(self) -> frozenset[str]:
        return frozenset({"volcano"})

    async def wait_for_change(self, timeout: float) -> None: ...


def serving() -> ModelServing:
    template = {"spec": {"containers": [{"name": "engine", "image": "engine:v1"}]}}
    role = {"name": "engine", "workerReplicas": 3, "entryTemplate": template, "workerTemplate": template}
    return ModelServing.model_validate(
        {
            "apiVersion": "serving.phalanx.dev/v1alpha1",
            "kind": "ModelServing",
            "metadata": {"name": "big", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"replicas": GROUPS, "template": {"roles": [role]}},
        }
    )


async def test_the_loop_keeps_turning_while_a_steady_1000_group_pass_decides() -> None:
    ms = serving()
    runtime = SteadyRuntime(ms)
    reconciler = Reconciler(runtime)  # type: ignore[arg-type]
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.monotonic()
    decision = await reconciler.reconcile_serving(ms)
    took = time.monotonic() - started
    stop.set()
    await ticking
    assert runtime.writes == 0 and not decision.actions  # steady: the pass only decides
    assert took > 0.1, f"the pass took {took:.2f}s: too short to tell"
    during = [t for t in ticks if t >= started]
    # Blocked, the loop would not tick at all while the pass ran (longest ~ took). The bound is loose
    # because on a busy machine the pass's thread holds the GIL in long slices between ticks.
    longest = max((b - a for a, b in itertools.pairwise(during)), default=took)
    assert longest < took * 0.75, f"the loop stood still for {longest:.2f}s of a {took:.2f}s pass"
