"""The imperative shell around the controller core: observe → reconcile → apply, for any runtime.

Stateless between passes: every pass reads the objects afresh, so this loop can be killed and
restarted at any moment. It wakes when the runtime reports a change, when a decision asks to be
looked at again (grace periods, backoff, drains), and at least every `resync` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing
from phalanx.controller.actions import Action, Annotate, Apply, Create, Decision, Delete
from phalanx.controller.observed import observe
from phalanx.controller.reconcile import reconcile
from phalanx.controller.recovery import Settings
from phalanx.controller.revision import serving_from_revision
from phalanx.runtimes.base import NotFoundError, Runtime

log = logging.getLogger("phalanx.controller")

# Namespace -> requests in flight per entry pod name (the router's counters).
InFlight = Callable[[str], Mapping[str, int]]


def execution_waves(actions: Sequence[Action], groups_per_block: int = 32) -> list[list[Action]]:
    """The decision's actions as waves: the actions of one wave may run at once, waves in order.

    A run of consecutive creates is cut into blocks of at most `groups_per_block` ServingGroups (by
    their group-index label; an object without one goes with the block it comes in), and each
    block becomes two waves: everything but pods first (revisions, gang objects, Services: a pod
    must never exist before its PodGroup, or Volcano's controller would give it a PodGroup of its
    own), then the pods. Blocks let the first pods reach the scheduler while later groups are still
    being written, instead of after every gang object and Service of a 1000-group pass. Any other
    action keeps its place, alone.
    """
    waves: list[list[Action]] = []
    objects: list[Action] = []
    pods: list[Action] = []
    block: set[str] = set()

    def flush() -> None:
        waves.extend(w for w in (objects.copy(), pods.copy()) if w)
        objects.clear()
        pods.clear()
        block.clear()

    for action in actions:
        if not isinstance(action, Create):
            flush()
            waves.append([action])
            continue
        group = (action.object.get("metadata", {}).get("labels") or {}).get(L.GROUP_INDEX)
        if group is not None and group not in block:
            if len(block) >= groups_per_block:
                flush()
            block.add(group)
        (pods if action.kind == "Pod" else objects).append(action)
    flush()
    return waves


async def _bounded(calls: Sequence[Awaitable[None]], limit: int) -> None:
    """Await every call with at most `limit` running; the first error is raised after all finish."""
    if len(calls) == 1:
        await calls[0]
        return
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[None]) -> None:
        async with gate:
            await call

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class Reconciler:
    def __init__(
        self,
        runtime: Runtime,
        *,
        settings: Settings | None = None,
        in_flight: InFlight | None = None,
        clock: Callable[[], float] = time.time,
        resync: float = 5.0,
        parallelism: int = 16,
    ) -> None:
        self.runtime = runtime
        self.settings = settings or Settings()
        self.in_flight = in_flight or (lambda _namespace: {})
        self.clock = clock
        self.resync = resync
        self.parallelism = parallelism  # writes in flight at once (a 400-pod pass is 400 creates)
        self.passes = 0
        self._last_actions: dict[str, tuple[str, int]] = {}

    async def reconcile_serving(self, ms: ModelServing) -> Decision:
        runtime, namespace = self.runtime, ms.namespace
        selector = {L.NAME: ms.name}
        pods = await runtime.list_objects("Pod", namespace, selector)
        services = await runtime.list_objects("Service", namespace, selector)
        gangs = await runtime.list_objects("PodGroup", namespace, selector)
        revision_objects = await runtime.list_objects("ControllerRevision", namespace, selector)
        revisions = dict(r for r in (serving_from_revision(o) for o in revision_objects) if r is not None)
        in_flight, served, now = self.in_flight(namespace), runtime.served_gangs(), self.clock()

        def decide() -> Decision:
            observed = observe(pods, services, gangs, revisions, in_flight, served_gangs=served)
            return reconcile(ms, observed, now, self.settings)

        # The pure core runs off the event loop: at 1000 groups it is ~0.5 s of CPU, during which
        # watches went unread (the API server closed the operator's pod watch as unresponsive).
        decision = await asyncio.to_thread(decide)
        for event in decision.events:
            log.info("%s %s: %s", ms.name, event.reason, event.message)
        events = [runtime.record_event(namespace, ms.name, event) for event in decision.events]
        # Events alongside the writes, not before them: 1000 GroupCreated Events held back every
        # object of a 1000-group pass by seconds. Recording one never fails a pass.
        results = await asyncio.gather(
            _bounded(events, self.parallelism), self._act(namespace, decision.actions), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if decision.status != ms.status:
            with contextlib.suppress(NotFoundError):  # deleted meanwhile; its objects go with it
                await runtime.write_status(namespace, ms.name, decision.status)
        return decision

    async def _act(self, namespace: str, actions: Sequence[Action]) -> None:
        for wave in execution_waves(actions):
            await _bounded([self._do(namespace, action) for action in wave], self.parallelism)

    async def _do(self, namespace: str, action: Action) -> None:
        runtime = self.runtime
        if isinstance(action, Create):
            await runtime.create(action.object)
        elif isinstance(action, Apply):
            await runtime.apply(action.object)
        elif isinstance(action, Delete):
            await runtime.delete(action.kind, namespace, action.name)
        elif isinstance(action, Annotate):
            await runtime.annotate(action.kind, namespace, action.name, action.annotations)

    async def reconcile_all(self) -> float:
        """One pass over every ModelServing; returns how long until the next pass is due."""
        self.passes += 1
        wait = self.resync
        for ms in await self.runtime.list_servings():
            try:
                decision = await self.reconcile_serving(ms)
            except Exception:
                # One broken serving must not stop the others; the next pass retries it.
                log.exception("reconcile of %s/%s failed", ms.namespace, ms.name)
                wait = min(wait, 1.0)
                continue
            if decision.actions and self._repeating(ms, decision):
                # The same actions again and again change nothing (an object the runtime refuses or
                # rewrites): slow down instead of spinning, and say so.
                log.warning(
                    "%s/%s: the same %d actions keep coming back",
                    ms.namespace,
                    ms.name,
                    len(decision.actions),
                )
                wait = min(wait, 1.0)
            elif decision.actions:
                wait = 0.0  # look again at once: the runtime has changed under our feet
            elif decision.requeue_after is not None:
                wait = min(wait, decision.requeue_after)
        return wait

    def _repeating(self, ms: ModelServing, decision: Decision) -> bool:
        key = f"{ms.namespace}/{ms.name}"
        signature = repr(decision.actions)
        previous, count = self._last_actions.get(key, ("", 0))
        count = count + 1 if signature == previous else 1
        self._last_actions[key] = (signature, count)
        return count >= 3

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            wait = await self.reconcile_all()
            if wait > 0:
                await self.runtime.wait_for_change(wait)
            else:
                await asyncio.sleep(0)  # let the runtime's own tasks run between passes
