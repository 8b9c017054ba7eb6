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
from dataclasses import dataclass, field, replace

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
from phalanx.autoscale.conflicts import claim_of, resolve
from phalanx.autoscale.core import autoscale
from phalanx.autoscale.from_api import (
    core_policy,
    disaggregated_status,
    format_time,
    history_from_status,
    role_histories,
    status_from_decision,
)
from phalanx.autoscale.observe.assemble import build_signals
from phalanx.autoscale.observe.engine import UnitFields, observe_units
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.observe.snapshot import PageSnapshot
from phalanx.autoscale.policy_status import (
    decided,
    false_condition,
    role_pass_period,
    target_name,
    with_conditions,
)
from phalanx.autoscale.roles import autoscale_roles
from phalanx.autoscale.types import Decision, EventType, History, Policy, RolePolicies, Signals
from phalanx.controller.actions import Event
from phalanx.controller.scaling import ScaleRefused, scaled
from phalanx.embedded.autoscale_units import gpus_per_unit, placeable
from phalanx.http.pages import PageReader
from phalanx.router.declared import serving_models
from phalanx.router.pods import endpoint_from_pod
from phalanx.router.serving_figures import figures_for_serving
from phalanx.runtimes.group_units import GroupUnit, group_units
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
        roles: list[str | None] = list(policy.roles) if isinstance(policy, RolePolicies) else [None]
        if isinstance(policy, RolePolicies) and ms.spec.replicas != 1:
            message = (
                f"scaling roles needs ModelServing {name} at spec.replicas 1 (it has {ms.spec.replicas}): "
                "roles[].replicas counts instances per group"
            )
            self._conditions(held, false_condition(CONDITION_READY, "NotSupported", message))
            return
        pods = await self.runtime.list_objects("Pod", namespace, {})
        units = {role: group_units(pods, name, endpoint_from_pod, role) for role in roles}
        every = [u for found in units.values() for u in found]
        engines = await self.scrape_engines(session, held, every, now)
        router = await self._router(session, held, ms, every, now)
        free = self.runtime.gpu_inventory().free
        signals: dict[str | None, Signals] = {}
        for role, found in units.items():
            names = {u.state.name for u in found}
            mine = (
                replace(router, inflight={k: v for k, v in router.inflight.items() if k in names})
                if router
                else None
            )
            room = placeable(gpus_per_unit(ms.to_dict(), role), free, found)
            one = build_signals([u.state for u in found], engines, mine, placeable=room)
            if router is not None and router.arrivals_per_second is not None:
                one = replace(one, demand_requests_per_second=router.arrivals_per_second)
            signals[role] = one
        status = held.policy.status or AutoscalingPolicyStatus()
        if isinstance(policy, Policy):
            history = (
                held.history if held.history is not None else history_from_status(status.homogeneous_status)
            )
            decision = autoscale(policy, signals[None], now, history)
            held.history = decision.history
            await self._act(held, policy, decision, ms, None)
            status = status.model_copy(update={"homogeneous_status": status_from_decision(decision)})
            reasons = [decision.reason]
        else:
            histories = held.roles if held.roles is not None else role_histories(status.disaggregated_status)
            by_role = {role: s for role, s in signals.items() if role is not None}
            decisions = autoscale_roles(policy, by_role, now, histories)
            held.roles = {role: d.history for role, d in decisions.items()}
            for role, decision in sorted(decisions.items()):
                current = await self.runtime.get_serving(namespace, name)
                if current is not None:
                    await self._act(held, policy.roles[role], decision, current, role)
            status = status.model_copy(
                update={"disaggregated_status": disaggregated_status(decisions, policy.ratio)}
            )
            reasons = [f"{role}: {decisions[role].reason}" for role in sorted(decisions)]
        self._write(held, status, reasons)

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

    async def _act(
        self, held: Held, policy: Policy, decision: Decision, ms: ModelServing, role: str | None
    ) -> None:
        """The core's events, then the replica count (unless observeOnly), with an event saying why."""
        who = f"AutoscalingPolicy {held.policy.name}"
        for event in decision.events:
            await self._event(ms, event.type, event.reason, f"{who}: {event.message}")
        replicas = ms.spec.replicas if role is None else _role_replicas(ms, role)
        if decision.desired == replicas:
            return
        what = "replicas" if role is None else f"role {role} replicas"
        change = f"{what} {replicas} -> {decision.desired}: {decision.reason}"
        if policy.observe_only:
            if decision.changed:
                await self._event(ms, "Normal", "AutoscaleObserved", f"{who} would set {change}")
            return
        updated = scaled(ms, decision.desired, role)
        if isinstance(updated, ScaleRefused):
            await self._event(
                ms, "Warning", "AutoscaleFailed", f"{who} cannot set {change}: {updated.message}"
            )
            return
        await self.runtime.apply_serving(updated)
        await self._event(ms, "Normal", "Autoscaled", f"{who} set {change}")

    async def _event(self, ms: ModelServing, type_: EventType, reason: str, message: str) -> None:
        await self.runtime.record_event(ms.namespace, ms.name, Event(type_, reason, message))

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
    return target is not None and any(_role_replicas(ms, role) == 0 for role in target.roles)


def _role_replicas(ms: ModelServing, role: str) -> int:
    return next((r.replicas for r in ms.spec.template.roles if r.name == role), 0)
