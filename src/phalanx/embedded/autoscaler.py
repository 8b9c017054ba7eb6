"""The autoscaler under `phalanx up` (the I/O around the pure core): every `period`, for each
AutoscalingPolicy it scrapes the target's entry pods and the in-process router on loopback, asks
`phalanx.autoscale.core.autoscale`, writes the policy's status, and (unless observeOnly) sets the
ModelServing's replicas the way `phalanx scale` does, so a scale-down drains through the
controller's drain rule.

A request the router starts holding for a model at zero units wakes the loop: each policy whose
target serves that model and has no unit decides at once (the core's decision, as in any pass)
instead of at its next period, so the first group starts without waiting up to one `period`.

Scraping is bounded: a timeout per page and a few pages at a time. A page that cannot be read is
unknown (None) for that pass, never 0. The History lives in memory between passes and is written
to the policy's status each pass; a policy re-applied without it is rebuilt from that status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

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
from phalanx.autoscale.observe.engine import UnitFields, observe_units
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.observe.snapshot import PageSnapshot
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
from phalanx.embedded.autoscale_units import gpu_room, gpus_per_unit, placeable
from phalanx.http.pages import PageReader
from phalanx.router.declared import serving_models
from phalanx.router.pods import endpoint_from_pod
from phalanx.router.serving_figures import figures_for_serving
from phalanx.runtimes.group_units import GroupUnit, target_units
from phalanx.runtimes.local.runtime import LocalRuntime

log = logging.getLogger("phalanx.up")

Key = tuple[str, str]  # the policy's namespace, name
TICK_SECONDS = 0.25  # how often due policies are looked for
# The least time between two passes of one policy woken by held requests: a target the core keeps
# at zero (observeOnly, nothing placeable) must not get a pass per arriving request.
WAKE_SPACING = 1.0


@dataclass
class Held:
    """One policy as `up` holds it: the resource with its status, the history and the last pages."""

    policy: AutoscalingPolicy
    history: History | None = None  # None: rebuild from the status
    roles: dict[str, History] | None = None  # per role, for a policy on roles; None: from the status
    due: float = 0.0
    passed: float | None = None  # when the last pass ran
    engines: dict[str, PageSnapshot] = field(default_factory=dict)  # entry endpoint -> last page
    router: PageSnapshot | None = None


class Autoscaler:
    def __init__(
        self,
        runtime: LocalRuntime,
        router_url: str,
        *,
        scrape_timeout: float = 2.0,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.router_url = router_url
        self.pages = PageReader(timeout=scrape_timeout, concurrency=concurrency)
        self.clock = clock
        self.held: dict[Key, Held] = {}
        self._held_models: set[str] = set()  # models the router held a request for since the last tick
        self._woken = asyncio.Event()

    def held_at_zero(self, model: str) -> None:
        """The router's hook: a request for `model` waits for a first endpoint."""
        self._held_models.add(model)
        self._woken.set()

    def apply(self, policy: AutoscalingPolicy) -> str:
        """Takes a policy (created, configured or unchanged); its status and history are kept."""
        key = (policy.metadata.namespace, policy.metadata.name)
        held = self.held.get(key)
        if held is not None and held.policy.spec == policy.spec:
            return "unchanged"
        # The first apply is the policy's creation: with two on one target, the older one acts.
        created = held.policy.metadata.creation_timestamp if held is not None else format_time(self.clock())
        meta = policy.metadata.model_copy(update={"creation_timestamp": created})
        # A policy pointed at another target starts over: the old history is another target's.
        same = held is not None and target_name(held.policy) == target_name(policy)
        status = held.policy.status if held is not None and same else None
        stamped = policy.model_copy(update={"metadata": meta, "status": status})
        if held is None:
            self.held[key] = Held(stamped)
            return "created"
        if not same:
            held.history = held.roles = None
            held.engines, held.router = {}, None
        held.policy, held.due = stamped, 0.0
        return "configured"

    def policies(self) -> list[AutoscalingPolicy]:
        return [self.held[key].policy for key in sorted(self.held)]

    async def run(self, stopping: asyncio.Event) -> None:
        async with self.pages.session() as session:
            while not stopping.is_set():
                try:
                    await self.tick(session)
                except Exception:
                    log.exception("autoscaler pass failed; retrying")
                await self._sleep(stopping)

    async def _sleep(self, stopping: asyncio.Event) -> None:
        """Until the next tick, or sooner when stopping or woken by a held request."""
        waits = {asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._woken.wait())}
        try:
            await asyncio.wait(waits, timeout=TICK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def tick(self, session: aiohttp.ClientSession) -> None:
        """One pass for every policy whose period is up; a policy refused for a conflict only says so."""
        claims = [c for c in (claim_of(h.policy) for h in self.held.values()) if c is not None]
        refusals = resolve(claims)
        await self.wake_held()
        for key, held in sorted(self.held.items()):
            now = self.clock()  # each pass's own: the passes before it took time
            if now < held.due:
                continue
            refusal = refusals.get(key)
            if refusal is not None:
                self._conditions(held, refusal.condition)
                held.due = now + 1.0
                continue
            try:
                policy = core_policy(held.policy)
            except SpecError as exc:
                message = "; ".join(e.render() for e in exc.errors)
                self._conditions(held, false_condition(CONDITION_READY, "InvalidPolicy", message))
                held.due = now + 5.0
                continue
            held.due = now + (policy.period if isinstance(policy, Policy) else role_pass_period(policy))
            held.passed = now
            await self._pass(session, held, policy, now)

    async def wake_held(self) -> None:
        """Make due now (or `WAKE_SPACING` after its last pass) each policy whose target serves a
        model the router held a request for since the last tick and is at zero units."""
        models, self._held_models = self._held_models, set()
        self._woken.clear()
        if not models:
            return
        for held in self.held.values():
            ms = await self.runtime.get_serving(held.policy.metadata.namespace, target_name(held.policy))
            if ms is None or not at_zero(ms, held.policy):
                continue
            if models & set(serving_models(ms.to_dict()) or ()):
                soonest = held.passed + WAKE_SPACING if held.passed is not None else 0.0
                held.due = min(held.due, soonest)

    async def _pass(
        self, session: aiohttp.ClientSession, held: Held, policy: Policy | RolePolicies, now: float
    ) -> None:
        namespace, name = held.policy.metadata.namespace, target_name(held.policy)
        ms = await self.runtime.get_serving(namespace, name)
        if ms is None:
            message = f"no ModelServing {namespace}/{name}; the policy waits for it"
            self._conditions(held, false_condition(CONDITION_TARGET_FOUND, "TargetNotFound", message))
            return
        if (
            isinstance(policy, RolePolicies)
            and (refused := roles_refusal(name, ms.spec.replicas)) is not None
        ):
            self._conditions(held, refused)
            return
        roles: list[str | None] = list(policy.roles) if isinstance(policy, RolePolicies) else [None]
        pods = await self.runtime.list_objects("Pod", namespace, {})
        target = target_units(pods, name, endpoint_from_pod, roles, lambda r: _replicas(ms, r), now)
        scraped = await self.scrape_engines(session, held, target.instances, now)
        engines, router = target.per_unit(
            scraped, await self._router(session, held, ms, target.instances, now)
        )
        free = self.runtime.gpu_inventory().free
        # A slice puts one instance in each group.
        per_unit = {r: gpus_per_unit(ms.to_dict(), r) * (target.groups if r else 1) for r in target.units}
        room = {role: placeable(per_unit[role], free, found) for role, found in target.units.items()}
        shared = None
        if isinstance(policy, RolePolicies):  # the roles' new units share the free GPUs
            by_role = {r: found for r, found in target.units.items() if r is not None}
            shared = gpu_room(free, {r: per_unit[r] for r in by_role}, by_role)
        states = {role: [u.state for u in found] for role, found in target.units.items()}
        signals = role_signals(states, engines, router, room)
        kept = held.history if isinstance(policy, Policy) else held.roles
        done = decide(
            held.policy.name,
            policy,
            signals,
            now,
            held.policy.status,
            kept,
            lambda r: _replicas(ms, r),
            shared,
        )
        held.history, held.roles = done.history, done.roles
        for role, one in done.acts:
            current = await self.runtime.get_serving(namespace, name)  # a role set before changed it
            if current is not None:
                await self._act(current, one, role)
        self._write(held, done.status, done.reasons)

    async def _router(
        self, session: aiohttp.ClientSession, held: Held, ms: ModelServing, units: list[GroupUnit], now: float
    ) -> RouterFigures | None:
        """The router's figures for the target's model; None when its page or model is unknown."""
        page = await self.pages.read(session, self.router_url + "/metrics")
        figures, held.router = figures_for_serving(
            page,
            held.router,
            now,
            serving=ms.to_dict(),
            servings=[s.to_dict() for s in await self.runtime.list_servings()],
            endpoints={u.endpoint: u.state.name for u in units if u.endpoint is not None},
        )
        return figures

    async def _act(self, ms: ModelServing, one: Act, role: str | None) -> None:
        """The decision's events, then the count (`autoscale.act`) set as `phalanx scale` sets it."""
        for event in one.events:
            await self._event(ms, event)
        if one.replicas is None:
            return
        updated = scaled(ms, one.replicas, role)
        if isinstance(updated, ScaleRefused):
            await self._event(ms, one.failed(updated.message))
            return
        await self.runtime.apply_serving(updated)
        await self._event(ms, one.applied())

    async def _event(self, ms: ModelServing, event: AutoscaleEvent) -> None:
        await self.runtime.record_event(ms.namespace, ms.name, Event(event.type, event.reason, event.message))

    async def scrape_engines(
        self, session: aiohttp.ClientSession, held: Held, units: list[GroupUnit], now: float
    ) -> dict[str, UnitFields]:
        """Each ready entry pod's page, at most `concurrency` at a time; a failure is unknown."""
        live = [u for u in units if u.state.ready and u.url is not None and u.endpoint is not None]
        pages = await asyncio.gather(*(self.pages.read(session, f"{u.url}/metrics") for u in live))
        read = {u.state.name: (u.endpoint or "", page) for u, page in zip(live, pages, strict=True)}
        fields, kept = observe_units(read, held.engines, now)
        held.engines = kept  # a pod that is gone takes its window with it
        return fields

    def _write(self, held: Held, status: AutoscalingPolicyStatus, reasons: list[str]) -> None:
        held.policy = held.policy.model_copy(update={"status": status})
        self._conditions(held, *decided(reasons))

    def _conditions(self, held: Held, *conditions: Condition) -> None:
        status = with_conditions(held.policy.status, conditions, format_time(self.clock()))
        held.policy = held.policy.model_copy(update={"status": status})


def at_zero(ms: ModelServing, policy: AutoscalingPolicy) -> bool:
    """No unit of what the policy scales: no group, or a scaled role at 0 instances."""
    if ms.spec.replicas == 0:
        return True
    target = policy.spec.disaggregated_target
    return target is not None and any(_replicas(ms, role) == 0 for role in target.roles)


def _replicas(ms: ModelServing, role: str | None) -> int:
    if role is None:
        return ms.spec.replicas
    return next((r.replicas for r in ms.spec.template.roles if r.name == role), 0)
