"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

`decide` is the whole policy (pure): who may hold the lease now. The elector around it reads the
Lease, writes it back with its resourceVersion (so of two candidates only one wins a race), and
tells the operator when leadership starts and when it is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from lightkube import AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from phalanx.kube.errors import KUBE_ERRORS, describe, is_not_found, status_of

log = logging.getLogger("phalanx.operator")

Step = Literal["create", "renew", "acquire", "follow"]


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    renewed_at: float | None  # seconds since the epoch
    duration: float  # leaseDurationSeconds
    transitions: int = 0

    def expired(self, now: float) -> bool:
        return self.renewed_at is None or now > self.renewed_at + self.duration


def decide(lease: LeaseState | None, me: str, now: float) -> Step:
    """What `me` should do with the lease at `now`."""
    if lease is None:
        return "create"
    if lease.holder == me:
        return "renew"
    if not lease.holder or lease.expired(now):
        return "acquire"
    return "follow"


@dataclass(frozen=True)
class Timing:
    """client-go's defaults: a leader that cannot renew for `renew_deadline` steps down before
    anyone else may take over after `lease_duration`."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")


class Elector:
    """Holds a Lease while it can; `leading` is set while this process is the leader.

    Losing the lease (or failing to renew it within `renew_deadline`) clears `leading` and sets
    `lost`: the operator then stops reconciling and exits, so it restarts as a clean follower, as
    client-go's OnStoppedLeading does.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        name: str,
        namespace: str,
        identity: str,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.timing = timing or Timing()
        self.clock = clock
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self._renewed_at: float | None = None

    async def run(self) -> None:
        while not self.lost.is_set():
            try:
                await self._try_once()
            except KUBE_ERRORS as exc:
                # A lost race for the Lease (409) is routine; anything else (unreachable, forbidden)
                # is worth a warning, as it ends in stepping down.
                level = logging.DEBUG if status_of(exc) == 409 else logging.WARNING
                log.log(level, "lease %s/%s: %s", self.namespace, self.name, describe(exc))
            renewed = self._renewed_at
            if (
                self.leading.is_set()
                and renewed is not None
                and self.clock() - renewed > self.timing.renew_deadline
            ):
                log.error("could not renew lease %s/%s in time: stepping down", self.namespace, self.name)
                self.leading.clear()
                self.lost.set()
                return
            await asyncio.sleep(self.timing.retry_period)

    async def _try_once(self) -> None:
        try:
            lease: Lease | None = await self.client.get(Lease, self.name, namespace=self.namespace)
        except KUBE_ERRORS as exc:
            if not is_not_found(exc):
                raise
            lease = None
        now = self.clock()
        state = _state(lease, self.timing)
        step = decide(state, self.identity, now)
        if step == "follow":
            if self.leading.is_set():  # someone else holds it now
                log.error("lease %s/%s taken by %s", self.namespace, self.name, state and state.holder)
                self.leading.clear()
                self.lost.set()
            return
        stamp = datetime.fromtimestamp(now, UTC)
        transitions = state.transitions if state else 0
        spec = LeaseSpec(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self.timing.lease_duration),
            renewTime=stamp,
            acquireTime=stamp
            if step != "renew"
            else (lease.spec.acquireTime if lease and lease.spec else stamp),
            leaseTransitions=transitions + (1 if step == "acquire" else 0),
        )
        if lease is None:
            await self.client.create(
                Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
            )
        else:
            lease.spec = spec  # the resourceVersion in `lease.metadata` makes a lost race a 409
            await self.client.replace(lease)
        self._renewed_at = now
        if not self.leading.is_set():
            log.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
            self.leading.set()

    async def release(self) -> None:
        """Give the lease up on a clean shutdown, so a follower takes over at once."""
        if not self.leading.is_set():
            return
        with contextlib.suppress(*KUBE_ERRORS):
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
            if lease.spec and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                await self.client.replace(lease)
        self.leading.clear()


def _state(lease: Lease | None, timing: Timing) -> LeaseState | None:
    if lease is None:
        return None
    spec = lease.spec or LeaseSpec()
    renewed = spec.renewTime.timestamp() if spec.renewTime else None
    return LeaseState(
        holder=spec.holderIdentity,
        renewed_at=renewed,
        duration=float(spec.leaseDurationSeconds or timing.lease_duration),
        transitions=spec.leaseTransitions or 0,
    )
