"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

`decide` is the whole policy (pure): who may hold the lease now. The elector around it reads the
Lease, writes it back with its resourceVersion (so of two candidates only one wins a race), and
tells the operator when leadership starts and when it is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
