"""CrashLoopBackOff: how long a kubelet waits before restarting a container that exited."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    """Kubernetes uses 10 s doubling to 5 min, reset after 10 min running; locally it is faster."""

    base: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0


class RestartBackoff:
    """Per container: the delay before the next restart, given how long the last run lasted."""

    def __init__(self, policy: BackoffPolicy) -> None:
        self.policy = policy
        self._delay = 0.0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.policy.reset_after:
            self._delay = 0.0  # it ran long enough: this is a fresh failure, not a crash loop
        self._delay = self.policy.base if self._delay == 0 else min(self._delay * 2, self.policy.cap)
        return min(self._delay, self.policy.cap)
