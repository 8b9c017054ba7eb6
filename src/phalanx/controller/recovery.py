"""Failure handling: when a failed pod triggers the recovery policy, and how long repeats wait."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from phalanx.controller.observed import PodState


@dataclass(frozen=True)
class Settings:
    # Second and later recoveries in a row wait base, 2*base, 4*base ... up to cap.
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    # A role instance ready this long has its failure count cleared.
    failure_reset_after: float = 300.0
    # Routers refresh their endpoints; a group marked draining waits this long before deletion
    # even when no request is in flight, so none is routed to it in between.
    drain_settle: float = 2.0
    # Drain bound when the entry pod sets no terminationGracePeriodSeconds (Kubernetes' default).
    default_drain_timeout: float = 30.0
    # How often to look again while waiting for in-flight requests to finish.
    drain_poll: float = 0.5


def backoff_delay(failures: int, settings: Settings) -> float:
    """Wait before recreating after the n-th recovery in a row: none for the first."""
    if failures <= 1:
        return 0.0
    return float(min(settings.backoff_base * 2 ** (failures - 2), settings.backoff_cap))


def backoff_until(failures: int, last_failure: float | None, settings: Settings) -> float | None:
    if last_failure is None:
        return None
    delay = backoff_delay(failures, settings)
    return last_failure + delay if delay > 0 else None


@dataclass(frozen=True)
class Failure:
    pod: PodState
    due: float  # when the grace period ends and the policy applies

    def describe(self) -> str:
        reason = self.pod.reason or ("Failed" if self.pod.phase == "Failed" else "not ready after restart")
        count = self.pod.restart_count
        restarts = f", {count} restart{'' if count == 1 else 's'}" if count else ""
        return f"pod {self.pod.name} {reason}{restarts}"


def failures(pods: Iterable[PodState], grace_seconds: float) -> list[Failure]:
    """Failed pods with the time the policy applies to them: `restartGracePeriodSeconds` after they
    stopped being ready (a pod that recovers in place within the grace period is left alone)."""
    found = []
    for pod in pods:
        if pod.failed:
            found.append(Failure(pod=pod, due=pod.ready_changed_at + grace_seconds))
    return found
