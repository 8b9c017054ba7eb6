"""The operator process: watches → work queue → the controller core, while this replica leads.

Every replica watches and answers probes; only the Lease holder reconciles. Keys are
(kind, namespace, name): a ModelServing is reconciled by the shared `Reconciler`; a
ModelDeployment is planned and compiled into the ModelServing it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from lightkube import AsyncClient
from lightkube.types import PatchType
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError

from phalanx.api import labels as L
from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.errors import FieldError, SpecError, only_errors
from phalanx.api.load import parse_resource
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.api.modelserving import ModelServing
from phalanx.autoscale.conflicts import claim_of
from phalanx.compiler import compile_deployment
from phalanx.controller.actions import Event
from phalanx.controller.deployment_replicas import autoscaled, counts_to_send
from phalanx.controller.observed import format_time
from phalanx.controller.ownership import controlled_by
from phalanx.controller.recovery import Settings
from phalanx.kube.errors import (
    KUBE_ERRORS,
    describe,
    is_transient,
)
from phalanx.kube.informer import Informer
from phalanx.kube.resources import ModelDeploymentResource, ModelServingResource, as_dict
from phalanx.observe.collector import Snapshot, StatusCollector
from phalanx.operator.autoscaler import PolicyLoop
from phalanx.operator.inflight import EngineInFlight, ReadMetrics, ReadSettings, pod_reader
from phalanx.operator.leader import Elector, Timing
from phalanx.planner import plan_to_dict
from phalanx.runtimes.kubernetes.runtime import KubernetesRuntime
from phalanx.runtimes.reconciler import Reconciler
from phalanx.runtimes.workqueue import WorkQueue, run_workers

log = logging.getLogger("phalanx.operator")
PLAN_TIMEOUT_S = 60.0  # planning takes milliseconds; far longer means a defect, reported as one

Key = tuple[str, str, str]  # (kind, namespace, name)


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconcile_seconds = Histogram(
            "phalanx_operator_reconcile_duration_seconds",
            "Time of one reconcile of one object.",
            ["kind"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "phalanx_operator_reconcile_errors",
            "Reconciles that failed and were requeued.",
            ["kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "phalanx_operator_queue_depth", "Keys waiting for a worker.", registry=self.registry
        )
        self.leader = Gauge(
            "phalanx_operator_leader", "1 while this replica holds the Lease.", registry=self.registry
        )


@dataclass
class OperatorOptions:
    namespace: str | None = None  # None: every namespace
    lease_namespace: str = "default"
    lease_name: str = "phalanx-operator"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    health_address: str = "0.0.0.0"
    health_port: int = 8081
    workers: int = 2
    timing: Timing = field(default_factory=Timing)
    settings: Settings = field(default_factory=Settings)
    in_flight_reads: ReadSettings = field(default_factory=ReadSettings)
    router_metrics_url: str | None = None  # the router's /metrics, for the autoscaler; None: unknown


class Operator:
    def __init__(self, client: AsyncClient, options: OperatorOptions | None = None) -> None:
        self.client = client
        self.options = options or OperatorOptions()
        self.metrics = OperatorMetrics()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.runtime = KubernetesRuntime(
            client, namespace=self.options.namespace, on_change=self._serving_changed
        )
        # Drains wait on the engines' own request gauges, read from the draining entry pods.
        self.in_flight = EngineInFlight(
            pod_reader(client), self.options.in_flight_reads, metrics=ReadMetrics(self.metrics.registry)
        )
        # ModelDeployments are read from this cache, as ModelServings from the runtime's.
        self.deployments = Informer(
            client, ModelDeploymentResource, self.options.namespace, self._deployments_changed, logger=log
        )
        self.reconciler = Reconciler(self.runtime, settings=self.options.settings, in_flight=self.in_flight)
        self.autoscaler = PolicyLoop(
            client, self.runtime, self.options.namespace, router_metrics_url=self.options.router_metrics_url
        )
        self.elector = Elector(
            client,
            name=self.options.lease_name,
            namespace=self.options.lease_namespace,
            identity=self.options.identity,
            timing=self.options.timing,
        )
        self.stopping = asyncio.Event()
        self._started = False
        self._health: web.AppRunner | None = None
        # ModelServing and AutoscalingPolicy status as metrics: the leader's only (followers would
        # export the same figures twice); the servings are read by the /metrics handler.
        self._status: Snapshot | None = None
        self.metrics.registry.register(StatusCollector(lambda: self._status))

    def _serving_changed(self, namespace: str, name: str) -> None:
        self.queue.add(("ModelServing", namespace, name))

    # -- health and metrics -------------------------------------------------------------------

    def health_app(self) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            # Ready once watching: a follower is ready too (it takes over without a restart).
            return web.Response(text="ok") if self._started else web.Response(status=503, text="starting")

        async def metrics(_: web.Request) -> web.Response:
            self.metrics.queue_depth.set(len(self.queue))
            self.metrics.leader.set(1 if self.elector.leading.is_set() else 0)
            self._status = await self._status_snapshot()
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        return app

    async def _status_snapshot(self) -> Snapshot | None:
        if not (self.elector.leading.is_set() and self._started):
            return None
        try:
            servings = await self.runtime.list_servings()
        except KUBE_ERRORS as exc:  # the other metrics are still worth serving
            log.warning("status metrics skipped: cannot list ModelServings: %s", describe(exc))
            return None
        return Snapshot(
            servings=[ms.model_dump(by_alias=True, exclude_none=True, mode="json") for ms in servings],
            policies=list(self.autoscaler.policies.objects.values()),
        )

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> int:
        """Runs until stopped (0) or until leadership is lost (1: restart as a follower)."""
        runner = web.AppRunner(self.health_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.options.health_address, self.options.health_port).start()
        self._health = runner
        await self.runtime.start()
        self._started = True
        elector = asyncio.create_task(self.elector.run(), name="leader election")
        watch_deployments = asyncio.create_task(self.deployments.run(), name="watch ModelDeployments")
        in_flight = asyncio.create_task(self.in_flight.run(), name="in-flight requests of draining pods")
        try:
            waits = [asyncio.create_task(e.wait()) for e in (self.elector.leading, self.stopping)]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if self.stopping.is_set():
                return 0
            self.metrics.leader.set(1)
            await self._enqueue_until_done()
            workers = asyncio.create_task(
                run_workers(self.queue, self._handle, workers=self.options.workers, on_error=self._failed)
            )
            resync = asyncio.create_task(self._resync())
            # Only the leader decides; a new leader rebuilds each policy's history from its status.
            policies = asyncio.create_task(self.autoscaler.policies.run(), name="watch AutoscalingPolicies")
            autoscaler = asyncio.create_task(self.autoscaler.run(), name="autoscaler")
            ends: list[asyncio.Task[Any]] = [
                asyncio.create_task(e.wait()) for e in (self.elector.lost, self.stopping)
            ]
            await asyncio.wait([*ends, workers], return_when=asyncio.FIRST_COMPLETED)
            self.queue.shut_down()
            resync.cancel()
            for deciding in (policies, autoscaler):
                deciding.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await deciding
            for end in ends:
                end.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(workers, 30)
            return 1 if self.elector.lost.is_set() and not self.stopping.is_set() else 0
        finally:
            elector.cancel()
            watch_deployments.cancel()
            in_flight.cancel()
            for background in (elector, watch_deployments, in_flight):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await background
            await self.elector.release()
            await self.runtime.close()
            await runner.cleanup()

    def _enqueue_everything(self) -> bool:
        """Queues every ModelServing and ModelDeployment the caches hold; False until both have listed."""
        servings = self.runtime.serving_keys()
        if servings is None or not self.deployments.synced:
            return False
        for namespace, name in servings:
            self.queue.add(("ModelServing", namespace or "default", name))
        for namespace, name in sorted(self.deployments.objects):
            self.queue.add(("ModelDeployment", namespace or "default", name))
        return True

    async def _enqueue_until_done(self) -> None:
        """The caches list through their own retries (a server still warming up answers 429, RBAC may
        come later): the first pass waits for both lists, so it never reads an empty cache."""
        while not self._enqueue_everything():
            await asyncio.sleep(0.1)

    async def _resync(self) -> None:
        """Level-triggered safety net: every object is looked at again now and then, and at once
        when the cluster starts or stops serving a gang API (groups gain or lose PodGroups)."""
        changed = self.runtime.gangs_changed
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.reconciler.resync * 6)
            changed.clear()
            self._enqueue_everything()

    def _deployments_changed(self, objects: list[dict[str, Any]]) -> None:
        for obj in objects:
            metadata = obj.get("metadata") or {}
            if metadata.get("name"):
                self.queue.add(("ModelDeployment", metadata.get("namespace") or "default", metadata["name"]))

    def _failed(self, key: Key, exc: BaseException) -> None:
        self.metrics.reconcile_errors.labels(key[0]).inc()
        log.warning("reconcile of %s %s/%s failed (retrying): %s", *key, exc)

    async def _handle(self, key: Key) -> float | None:
        kind, namespace, name = key
        started = time.monotonic()
        try:
            if kind == "ModelDeployment":
                return await self._reconcile_deployment(namespace, name)
            return await self._reconcile_serving(namespace, name)
        finally:
            self.metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - started)

    async def _reconcile_serving(self, namespace: str, name: str) -> float | None:
        data = await self.runtime.read_serving(namespace, name)
        if data is None:
            self.in_flight.track(namespace, name, ())
            return None  # deleted: owner references take its objects with it
        ms, problems = parse_resource(data)
        if not isinstance(ms, ModelServing) or only_errors(problems):
            # Its groups are left as they are: a bad edit must not take a running model down.
            await self._report_invalid(ModelServingResource, data, problems)
            return None
        decision = await self.reconciler.reconcile_serving(ms)
        self.in_flight.track(namespace, name, decision.draining)
        return decision.requeue_after

    async def _reconcile_deployment(self, namespace: str, name: str) -> float | None:
        cached = self.deployments.objects.get((namespace, name))
        if cached is None:
            return None  # deleted: the ModelServing it owns goes with it
        if not self.autoscaler.policies.synced:
            return 0.2  # whether a policy owns the count is not known yet
        data = copy.deepcopy(cached)
        md, problems = parse_resource(data)
        if not isinstance(md, ModelDeployment) or only_errors(problems):
            await self._report_invalid(ModelDeploymentResource, data, problems)
            return None
        try:
            # Off the event loop: planning is CPU work, and watches and the leader lease must go on.
            compiled = await asyncio.wait_for(asyncio.to_thread(compile_deployment, md), PLAN_TIMEOUT_S)
        except SpecError as exc:  # the planner found no layout that fits: its message says why
            await self._report_invalid(
                ModelDeploymentResource, data, list(exc.errors), condition="Planned", reason="NoPlan"
            )
            return None
        except Exception as exc:  # a planner defect must say so on the object, not loop on retries
            log.error("planning %s/%s failed: %s", namespace, name, type(exc).__name__)
            problem = FieldError(
                ("spec",),
                f"could not be planned ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})",
                fix="check spec.model and the GPU shape; this is a Phalanx defect worth reporting",
            )
            await self._report_invalid(
                ModelDeploymentResource, data, [problem], condition="Planned", reason="PlannerError"
            )
            return None
        serving = compiled.model_serving.to_dict()
        serving.pop("status", None)
        uid = (data.get("metadata") or {}).get("uid")
        serving["metadata"]["namespace"] = namespace
        serving["metadata"]["ownerReferences"] = controlled_by("ModelDeployment", name, uid)
        stored = await self.runtime.read_serving(namespace, compiled.model_serving.name)
        targets, roles = self._policy_targets(namespace, compiled.model_serving.name)
        serving = counts_to_send(
            serving,
            stored,
            autoscaled=autoscaled(
                md.spec.autoscaling is not None, targets, compiled.model_serving.name, stored
            ),
            manager=L.FIELD_MANAGER,
            scaled_roles=roles,
        )
        await self.client.apply(
            ModelServingResource.from_dict(serving), field_manager=L.FIELD_MANAGER, force=True
        )
        plan = compiled.plan
        message = (
            f"{plan.nodes} node(s) x {plan.gpus_per_node} GPU(s), "
            f"data parallel {plan.data_parallel_size}, tensor parallel {plan.tensor_parallel_size}, "
            f"pipeline parallel {plan.pipeline_parallel_size}, {plan.kv_cache_tokens} KV-cache tokens"
        )
        await self._deployment_status(
            namespace, name, data, compiled.model_serving.name, plan_to_dict(plan), message
        )
        return None

    def _policy_targets(self, namespace: str, serving: str) -> tuple[list[str], set[str]]:
        """What the policies of `namespace` scale: ModelServings, and the roles of `serving`."""
        targets: list[str] = []
        roles: set[str] = set()
        for (policy_namespace, _), data in self.autoscaler.policies.objects.items():
            if (policy_namespace or "default") != namespace:
                continue
            try:
                claim = claim_of(AutoscalingPolicy.model_validate(data, strict=True))
            except ValidationError:
                continue  # an unreadable policy scales nothing
            if claim is not None:
                targets.append(claim.serving)
                if claim.serving == serving:
                    roles |= set(claim.roles or ())
        return targets, roles

    async def _report_invalid(
        self,
        resource: Any,
        data: dict[str, Any],
        problems: list[FieldError],
        *,
        condition: str = "Valid",
        reason: str = "InvalidSpec",
    ) -> None:
        """A spec the API server accepted but we cannot run (or plan): say so in a False status
        condition and a Warning Event, never crash-loop. Every error has its field path, value and fix."""
        metadata = data.get("metadata") or {}
        namespace, name = metadata.get("namespace") or "default", metadata.get("name", "")
        errors = only_errors(problems) or problems
        message = "; ".join(error.render() for error in errors)[:4000]
        previous = next(
            (c for c in (data.get("status") or {}).get("conditions") or [] if c.get("type") == condition),
            None,
        )
        if previous and previous.get("status") == "False" and previous.get("message") == message:
            return  # already said
        body = {
            "type": condition,
            "status": "False",
            "reason": reason,
            "message": message,
            "lastTransitionTime": format_time(time.time()),
            "observedGeneration": metadata.get("generation", 0),
        }
        log.warning("%s %s/%s: %s: %s", resource.__name__, namespace, name, reason, message)
        event = Event(
            reason=reason,
            message=message,
            type="Warning",
            object_kind=data.get("kind", "ModelServing"),
            object_name=name,
        )
        await self.runtime.record_event(namespace, name, event)
        try:
            written = await self.client.patch(
                resource.Status,
                name,
                {"status": {"conditions": [body]}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
            self._remember(written)
        except KUBE_ERRORS as exc:
            if is_transient(exc):
                raise  # the reconcile is retried and says it again
            log.warning("could not write the status of %s/%s: %s", namespace, name, describe(exc))

    async def _deployment_status(
        self,
        namespace: str,
        name: str,
        data: dict[str, Any],
        serving: str,
        plan: dict[str, Any],
        message: str,
    ) -> None:
        status = data.get("status") or {}
        previous = next((c for c in status.get("conditions") or [] if c.get("type") == "Planned"), None)
        planned_since = (
            previous["lastTransitionTime"]
            if previous and previous.get("status") == "True"
            else format_time(time.time())
        )
        planned = {
            "type": "Planned",
            "status": "True",
            "reason": "Planned",
            "message": message,
            "lastTransitionTime": planned_since,
        }
        body = {
            "status": {
                "observedGeneration": (data.get("metadata") or {}).get("generation", 0),
                "modelServing": serving,
                "plan": plan,
                "conditions": [planned],
            }
        }
        written = await self.client.patch(
            ModelDeploymentResource.Status, name, body, namespace=namespace, patch_type=PatchType.MERGE
        )
        self._remember(written)

    def _remember(self, written: Any) -> None:
        """A status we wrote goes into its cache at once: the next pass must not say it again."""
        data = as_dict(written)
        if data.get("kind") == "ModelDeployment":
            self.deployments.store.put(data)
        else:
            self.runtime.remember(data)
