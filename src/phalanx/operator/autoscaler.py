"""The autoscaler in the operator (the I/O around the pure core), while this replica leads: every
`period`, for each AutoscalingPolicy the informer holds, it reads the target ModelServing and its
pods from the runtime's caches, scrapes the ready entry pods' engine pages and the router's page
(`--router-metrics-url`), asks `autoscale`, writes the policy's status subresource, records
Events on the ModelServing and, unless observeOnly, patches `spec.replicas`; the controller then
starts groups, or drains and removes them.

Bounded like the one under `phalanx up` (`http.pages`): a page not read is unknown, never 0. The
History is rebuilt from each policy's status the first time this replica decides for it, so a new
leader goes on from where the last one stopped. A policy on roles (disaggregatedTarget) decides
each role's instances with `autoscale_roles` and patches `spec.template.roles[].replicas`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from lightkube import AsyncClient
from lightkube import operators as ops
from lightkube.resources.core_v1 import Pod, Service
from lightkube.types import PatchType
from pydantic import ValidationError

from phalanx.api.autoscalingpolicy import (
    CONDITION_READY,
    CONDITION_TARGET_FOUND,
    AutoscalingPolicy,
    AutoscalingPolicyStatus,
)
from phalanx.api.base import Condition
from phalanx.api.errors import SpecError
from phalanx.api.modelserving import ModelServing
from phalanx.autoscale.act import Act
from phalanx.autoscale.conflicts import claim_of, resolve
from phalanx.autoscale.from_api import (
    core_policy,
    format_time,
)
from phalanx.autoscale.observe.engine import observe_units
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.observe.snapshot import PageSnapshot
from phalanx.autoscale.placement_cluster import (
    Amounts,
    cluster_placeable,
    cluster_room,
    largest_first,
    unit_pods,
)
from phalanx.autoscale.policy_pass import decide, role_signals
from phalanx.autoscale.policy_status import (
    decided,
    false_condition,
    role_pass_period,
    roles_refusal,
    target_name,
    with_conditions,
)
from phalanx.autoscale.types import AutoscaleEvent, History, Policy, RolePolicies
from phalanx.controller.actions import Event
from phalanx.controller.scaling import ScaleRefused, scaled
from phalanx.http.pages import PageReader
from phalanx.kube.errors import KUBE_ERRORS, describe
from phalanx.kube.informer import Informer
from phalanx.kube.resources import AutoscalingPolicyResource, ModelServingResource, as_dict
from phalanx.operator.room import ClusterRoom
from phalanx.operator.router_pages import added, pod_urls, service_url
from phalanx.router.pods import endpoint_from_pod
from phalanx.router.serving_figures import figures_for_serving
from phalanx.runtimes.group_units import GroupUnit, target_units
from phalanx.runtimes.kubernetes.runtime import KubernetesRuntime

log = logging.getLogger("phalanx.operator.autoscaler")

Key = tuple[str, str]  # the policy's namespace, name
TICK_SECONDS = 0.25  # how often due policies are looked for
ROUTER_PODS_TTL_SECONDS = 5.0  # router pods are listed at most this often, for every policy together


@dataclass
class Kept:
    """What this replica keeps of one policy between passes; rebuilt from the status when absent."""

    history: History | None = None  # None: rebuild from the status
    roles: dict[str, History] | None = None  # per role, for a policy on roles; None: from the status
    due: float = 0.0
    target: str = ""  # the ModelServing the history is about
    engines: dict[str, PageSnapshot] = field(default_factory=dict)
    router: dict[str, PageSnapshot] = field(default_factory=dict)  # by router pod (or the URL)


class PolicyLoop:
    def __init__(
        self,
        client: AsyncClient,
        runtime: KubernetesRuntime,
        namespace: str | None,
        *,
        router_metrics_url: str | None = None,
        pages: PageReader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.router_metrics_url = router_metrics_url
        self.pages = pages or PageReader()
        self.clock = clock
        # An install without the AutoscalingPolicy CRD has no policies (ModelDeployments wait for this list).
        self.policies = Informer(
            client, AutoscalingPolicyResource, namespace, lambda _: None, absent_is_empty=True, logger=log
        )
        self.kept: dict[Key, Kept] = {}
        self.room = ClusterRoom(client)
        self._router_urls_at: float | None = None
        self._router_urls_cache: dict[str, str] = {}

    async def run(self) -> None:
        """Decides until cancelled (the operator cancels it when this replica stops leading)."""
        async with self.pages.session() as session:
            while True:
                if self.policies.synced:
                    try:
                        await self.tick(session)
                    except Exception:
                        log.exception("autoscaler pass failed; retrying")
                await asyncio.sleep(TICK_SECONDS)

    async def tick(self, session: aiohttp.ClientSession) -> None:
        policies: dict[Key, AutoscalingPolicy] = {}
        for key, data in sorted(self.policies.objects.items()):
            try:
                policies[key] = AutoscalingPolicy.model_validate(data, strict=True)
            except ValidationError as exc:
                log.warning("AutoscalingPolicy %s/%s cannot be read: %s", *key, exc.errors()[0]["msg"])
        self.kept = {key: self.kept.get(key, Kept()) for key in policies}  # deleted ones go
        refusals = resolve(c for c in map(claim_of, policies.values()) if c is not None)
        for key, policy in policies.items():
            kept = self.kept[key]
            now = self.clock()
            if now < kept.due:
                continue
            refusal = refusals.get(key)
            if refusal is not None:
                kept.due = now + 1.0
                await self._write(policy, policy.status, (refusal.condition,))
                continue
            try:
                core = core_policy(policy)
            except SpecError as exc:
                kept.due = now + 5.0
                message = "; ".join(e.render() for e in exc.errors)
                await self._write(
                    policy, policy.status, (false_condition(CONDITION_READY, "InvalidPolicy", message),)
                )
                continue
            kept.due = now + (core.period if isinstance(core, Policy) else role_pass_period(core))
            await self._pass(session, policy, core, kept, now)

    async def _pass(
        self,
        session: aiohttp.ClientSession,
        policy: AutoscalingPolicy,
        core: Policy | RolePolicies,
        kept: Kept,
        now: float,
    ) -> None:
        namespace, name = policy.metadata.namespace, target_name(policy)
        data = await self.runtime.read_serving(namespace, name)
        ms = _serving(data)
        if ms is None:
            message = f"no ModelServing {namespace}/{name} that can be read; the policy waits for it"
            condition = false_condition(CONDITION_TARGET_FOUND, "TargetNotFound", message)
            await self._write(policy, policy.status, (condition,))
            return
        if isinstance(core, RolePolicies) and (refused := roles_refusal(name, ms.spec.replicas)) is not None:
            await self._write(policy, policy.status, (refused,))
            return
        if kept.target != name:  # first pass here (None: from the status), or pointed elsewhere
            fresh = kept.target != ""
            kept.history, kept.roles = (History(), {}) if fresh else (None, None)
            kept.engines, kept.router, kept.target = {}, {}, name
        roles: list[str | None] = list(core.roles) if isinstance(core, RolePolicies) else [None]
        pods = await self.runtime.list_objects("Pod", namespace, {})
        target = target_units(pods, name, endpoint_from_pod, roles, lambda r: _replicas(ms, r), now)
        every = target.instances
        live = [u for u in every if u.state.ready and u.url is not None and u.endpoint is not None]
        texts = await asyncio.gather(*(self.pages.read(session, f"{u.url}/metrics") for u in live))
        read = {u.state.name: (u.endpoint or "", t) for u, t in zip(live, texts, strict=True)}
        scraped, kept.engines = observe_units(read, kept.engines, now)
        engines, router = target.per_unit(scraped, await self._router(session, kept, ms, every, now))
        pods_of = {role: role_unit(ms, role, target.groups) for role in target.units}
        # The nodes are listed only for a unit that needs an extended resource.
        free = await self.room.free() if any(pods_of.values()) else None
        waiting = {role: unplaced(found) for role, found in target.units.items()}
        room = {role: cluster_placeable(pods_of[role], free, waiting[role]) for role in target.units}
        shared = None
        if isinstance(core, RolePolicies):  # the roles' new units share the nodes' free room
            by_role = {role: pods for role, pods in pods_of.items() if role is not None}
            shared = cluster_room(free, by_role, {r: waiting[r] for r in by_role})
        states = {role: [u.state for u in found] for role, found in target.units.items()}
        signals = role_signals(states, engines, router, room)
        held = kept.history if isinstance(core, Policy) else kept.roles
        done = decide(
            policy.name, core, signals, now, policy.status, held, lambda role: _replicas(ms, role), shared
        )
        kept.history, kept.roles = done.history, done.roles
        await self._act(ms, data, done.acts)
        await self._write(policy, done.status, decided(done.reasons))

    async def _router(
        self, session: aiohttp.ClientSession, kept: Kept, ms: ModelServing, units: list[GroupUnit], now: float
    ) -> RouterFigures | None:
        """The router's figures for the target's model, each replica's page read on its own and
        added up (`router_pages`); None (unknown) without a page to read or with one not read."""
        if self.router_metrics_url is None:
            return None
        urls = await self._router_urls(self.router_metrics_url)
        pages = await asyncio.gather(*(self.pages.read(session, url) for url in urls.values()))
        servings = [s.to_dict() for s in await self.runtime.list_servings()]
        endpoints = {u.endpoint: u.state.name for u in units if u.endpoint is not None}
        figures, windows = [], {}
        for key, page in zip(urls, pages, strict=True):
            one, windows[key] = figures_for_serving(
                page, kept.router.get(key), now, serving=ms.to_dict(), servings=servings, endpoints=endpoints
            )
            figures.append(one)
        kept.router = {k: w for k, w in windows.items() if w is not None}  # a replica gone takes its window
        return added(figures)

    async def _router_urls(self, url: str) -> dict[str, str]:
        """`router_page_urls`, listed at most once every few seconds for all policies."""
        now = time.monotonic()
        if self._router_urls_at is None or now - self._router_urls_at >= ROUTER_PODS_TTL_SECONDS:
            self._router_urls_at = now
            self._router_urls_cache = await router_page_urls(self.client, url)
        return self._router_urls_cache

    async def _act(self, ms: ModelServing, data: Any, acts: list[tuple[str | None, Act]]) -> None:
        """The events, then every count to set in one merge patch (`replicas_patch`); a 409 or a
        refusal is an AutoscaleFailed event and the next pass decides again from what is stored."""
        for _, one in acts:
            for event in one.events:
                await self._event(ms, event)
        setting = [(role, one) for role, one in acts if one.replicas is not None]
        if not setting:
            return
        patch = replicas_patch(
            ms, data, [(role, one.replicas) for role, one in setting if one.replicas is not None]
        )
        if isinstance(patch, ScaleRefused):
            for _, one in setting:
                await self._event(ms, one.failed(patch.message))
            return
        try:
            written = await self.client.patch(
                ModelServingResource, ms.name, patch, namespace=ms.namespace, patch_type=PatchType.MERGE
            )
        except KUBE_ERRORS as exc:
            for _, one in setting:
                await self._event(ms, one.failed(describe(exc)))
            return
        self.runtime.remember(written)
        for _, one in setting:
            await self._event(ms, one.applied())

    async def _event(self, ms: ModelServing, event: AutoscaleEvent) -> None:
        await self.runtime.record_event(ms.namespace, ms.name, Event(event.type, event.reason, event.message))

    async def _write(
        self,
        policy: AutoscalingPolicy,
        status: AutoscalingPolicyStatus | None,
        conditions: tuple[Condition, ...],
    ) -> None:
        """The policy's status with `conditions`, written when it differs from what is stored."""
        new = with_conditions(status, conditions, format_time(self.clock()))
        new = new.model_copy(update={"observed_generation": policy.metadata.generation or 0})
        if new == policy.status:
            return
        try:
            written = await self.client.patch(
                AutoscalingPolicyResource.Status,
                policy.metadata.name,
                {"status": new.to_dict()},
                namespace=policy.metadata.namespace,
                patch_type=PatchType.MERGE,
            )
        except KUBE_ERRORS as exc:  # the next pass writes it again
            log.warning("status of AutoscalingPolicy %s/%s not written: %s", *_key(policy), describe(exc))
            return
        self.policies.store.put(as_dict(written))  # the next pass must not write the same again


async def router_page_urls(client: AsyncClient, url: str) -> dict[str, str]:
    """Each ready router pod's page (by pod name) when `url` names a Service the operator can list
    (`router_pages`), else `url` itself (keyed by the URL)."""
    target = service_url(url)
    if target is None:
        return {url: url}
    try:
        named: dict[str, str | ops.BinaryOperator | ops.SequenceOperator] = {"metadata.name": target.name}
        services = [as_dict(s) async for s in client.list(Service, namespace=target.namespace, fields=named)]
        selector = ((services[0].get("spec") or {}).get("selector") or {}) if services else {}
        if not selector:
            return {url: url}
        listing = client.list(Pod, namespace=target.namespace, labels=dict(selector))
        found = pod_urls(services[0], [as_dict(p) async for p in listing], target)
    except KUBE_ERRORS as exc:  # e.g. a watchNamespace install: the release namespace is not ours
        log.debug("router pods behind %s not listed (%s); reading the URL as it is", url, describe(exc))
        return {url: url}
    return found if found is not None else {url: url}


def _serving(data: Any) -> ModelServing | None:
    if data is None:
        return None
    try:
        return ModelServing.model_validate(data)
    except ValidationError:
        return None


def replicas_patch(
    ms: ModelServing, data: Any, counts: list[tuple[str | None, int]]
) -> dict[str, Any] | ScaleRefused:
    """The merge patch that sets `counts` (role None: spec.replicas) on the ModelServing read as
    `data`, validated as `phalanx scale` validates. It carries the resourceVersion read, so a change
    made since (by a user, or a ModelDeployment re-applied) fails it with 409."""
    updated: ModelServing | ScaleRefused = ms
    for role, replicas in counts:
        if isinstance(updated, ModelServing):
            updated = scaled(updated, replicas, role)
    if isinstance(updated, ScaleRefused):
        return updated
    stored = data or {}
    spec: dict[str, Any] = {"replicas": updated.spec.replicas}
    if any(role is not None for role, _ in counts):
        # A merge patch replaces a list whole: the roles as read, each with its new count.
        by_name = {r.name: r.replicas for r in updated.spec.template.roles}
        roles = copy.deepcopy(((stored.get("spec") or {}).get("template") or {}).get("roles") or [])
        for role in roles:
            role["replicas"] = by_name.get(role.get("name"), role.get("replicas"))
        spec = {"template": {"roles": roles}}
    version = (stored.get("metadata") or {}).get("resourceVersion")
    return {"metadata": {"resourceVersion": version}, "spec": spec}


def _replicas(ms: ModelServing, role: str | None) -> int:
    """The count the spec holds: spec.replicas, or role `role`'s instances per group."""
    if role is None:
        return ms.spec.replicas
    return next((r.replicas for r in ms.spec.template.roles if r.name == role), 0)


def _key(policy: AutoscalingPolicy) -> Key:
    return (policy.metadata.namespace, policy.metadata.name)


def role_unit(ms: ModelServing, role: str | None, groups: int) -> list[Amounts]:
    """The extended resources of one unit's pods: a group, or for a role a slice, one instance
    in each of the `groups` groups."""
    one = unit_pods(ms.to_dict(), role)
    return one if role is None else largest_first(one * groups)


def unplaced(units: list[GroupUnit]) -> int:
    """Units still waiting for a node (a draining one will never take one)."""
    return sum(1 for u in units if not u.placed and not u.state.draining)
