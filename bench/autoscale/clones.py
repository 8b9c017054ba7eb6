"""Clones of the autoscalers Phalanx is measured against, each with its documented defaults, as
`Scaler`s for the replayer. Written from their documentation and source; where a default comes
from is given next to it.

- `HPA`: the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on a per-pod metric.
  Defaults: the kube-controller-manager flags `--horizontal-pod-autoscaler-sync-period` (15 s) and
  `--horizontal-pod-autoscaler-tolerance` (0.1); the default `behavior` of autoscaling/v2
  (pkg/apis/autoscaling/v2/defaults.go): scale-up with no stabilisation, the larger of +4 pods or
  +100% per 15 s; scale-down with a 300 s stabilisation window, -100% per 15 s. (The API field's
  description says "per 60 seconds"; the defaulting code and the HPA walkthrough use 15 s.)
  The ratio rule, and pods without metrics counted as 0 on scale-up and as the target on
  scale-down, follow pkg/controller/podautoscaler/replica_calculator.go.
- `KEDA`: a ScaledObject with a Prometheus trigger on `sum(vllm:num_requests_waiting)`, metric
  type AverageValue: KEDA's ScaledObject reference gives pollingInterval 30 s, cooldownPeriod
  300 s, minReplicaCount 0 and activationThreshold 0; between 1 and N replicas the HPA that KEDA
  creates does the scaling (external metric, AverageValue: ceil(total / threshold) outside the
  tolerance), with the HPA defaults above.
- `KPA`: Knative's Pod Autoscaler on concurrency. Knative's config-autoscaler defaults: stable
  window 60 s, panic window 10% of it (6 s), panic threshold 200%, max scale-up rate 1000, max
  scale-down rate 2, tick 2 s, scale to zero allowed. `KPA.aibrix()` gives AIBrix's KPA defaults
  (pkg/controller/podautoscaler in vllm-project/aibrix: observe window 180 s, panic window 60 s,
  tolerance 0.1 both ways, scale-up rate 2, scale-down rate 2 (both against the scale's replica
  count, where Knative uses ready pods), panic threshold 2.0, scale-down cooldown 300 s, resync
  every 10 s, no scale to zero; panic is entered when the panic-window
  value exceeds twice the stable-window value, and its cooldown keeps the lowest recommendation of
  the window when scaling down, as its controller does).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from phalanx.autoscale.types import Signals, UnitSignals

PodMetric = Callable[[UnitSignals], float | None]


def not_draining(signals: Signals) -> int:
    """The replica count the scale subresource shows (units being removed are not counted)."""
    return sum(1 for u in signals.units if not u.draining)


def inflight(unit: UnitSignals) -> float | None:
    """Requests in the engine (running + waiting), as `vllm:num_requests_running + waiting`."""
    return unit.inflight


def waiting(unit: UnitSignals) -> float | None:
    return unit.waiting


def within(ratio: float, tolerance: float) -> bool:
    return abs(1.0 - ratio) <= tolerance


# --- HPA ---------------------------------------------------------------------------------------


@dataclass
class HPA:
    metric: PodMetric
    target: float  # AverageValue per pod
    min_replicas: int = 1
    max_replicas: int = 100
    period: float = 15.0
    tolerance: float = 0.1
    up_window: float = 0.0
    down_window: float = 300.0
    up_pods: int = 4
    up_percent: float = 100.0
    up_policy_period: float = 15.0
    down_percent: float = 100.0
    down_policy_period: float = 15.0
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)  # time, replicas added (< 0: removed)

    def replica_count(self, signals: Signals) -> int:
        """The ratio rule over the pods not being deleted; pods without metrics (not ready yet) are
        counted as 0 when scaling up and as the target when scaling down."""
        current = not_draining(signals)
        pods = [u for u in signals.units if not u.draining]
        known = [v for u in pods if u.ready and (v := self.metric(u)) is not None]
        missing = len(pods) - len(known)
        if not known:
            return current  # no metrics for any ready pod: the HPA does not act
        ratio = sum(known) / len(known) / self.target
        if missing == 0:
            return current if within(ratio, self.tolerance) else math.ceil(ratio * len(known))
        filled = sum(known) + (self.target * missing if ratio < 1.0 else 0.0)
        new_ratio = filled / (len(known) + missing) / self.target
        if within(new_ratio, self.tolerance) or (ratio < 1.0) != (new_ratio < 1.0):
            return current
        replicas = math.ceil(new_ratio * (len(known) + missing))
        if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
            return current
        return replicas

    def decide(self, signals: Signals, now: float) -> int:
        current = not_draining(signals)
        if current == 0:
            return 0  # an HPA does nothing at zero replicas
        return self.normalize(self.replica_count(signals), current, now)

    def normalize(self, recommendation: int, current: int, now: float) -> int:
        """Clamp, stabilise (lowest of the up window, highest of the down window), rate-limit."""
        recommendation = min(max(recommendation, self.min_replicas), self.max_replicas)
        self.recommendations.append((now, recommendation))
        keep = max(self.up_window, self.down_window)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep or t == now]
        up = min(r for t, r in self.recommendations if t > now - self.up_window or t == now)
        down = max(r for t, r in self.recommendations if t > now - self.down_window or t == now)
        desired = min(max(current, up), down)
        if desired > current:
            start = current - sum(d for t, d in self.events if t > now - self.up_policy_period and d > 0)
            limit = max(start + self.up_pods, math.ceil(start * (1 + self.up_percent / 100)))
            desired = min(desired, limit, self.max_replicas)
        elif desired < current:
            start = current - sum(d for t, d in self.events if t > now - self.down_policy_period and d < 0)
            limit = math.ceil(start * (1 - self.down_percent / 100))
            desired = max(desired, limit, self.min_replicas)
        if desired != current:
            self.events.append((now, desired - current))
        return desired


# --- KEDA --------------------------------------------------------------------------------------


@dataclass
class KEDA:
    threshold: float  # the trigger's target: waiting requests per replica
    min_replica_count: int = 0
    max_replica_count: int = 100
    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    activation_threshold: float = 0.0
    hpa: HPA = field(init=False)
    last_active: float | None = None
    next_poll: float = 0.0

    def __post_init__(self) -> None:
        self.hpa = HPA(metric=waiting, target=self.threshold, min_replicas=max(1, self.min_replica_count))
        self.hpa.max_replicas = self.max_replica_count

    @property
    def period(self) -> float:
        return self.hpa.period

    @staticmethod
    def total(signals: Signals) -> float:
        """`sum(vllm:num_requests_waiting)`: what the engines that exist report (none at zero)."""
        return sum(u.waiting or 0.0 for u in signals.units if u.ready)

    def decide(self, signals: Signals, now: float) -> int:
        current = not_draining(signals)
        total = self.total(signals)
        desired = current
        if current > 0:
            # The HPA, on the external metric with an AverageValue target.
            ready = sum(1 for u in signals.units if u.ready and not u.draining)
            ratio = total / (self.threshold * ready) if ready else math.inf
            recommendation = (
                current if within(ratio, self.hpa.tolerance) else math.ceil(total / self.threshold)
            )
            desired = self.hpa.normalize(recommendation, current, now)
        if now >= self.next_poll:  # KEDA's own loop: activation and scale to zero
            self.next_poll = now + self.polling_interval
            active = total > self.activation_threshold
            if active:
                self.last_active = now
            if current == 0 and active:
                desired = max(1, self.min_replica_count)
            elif current > 0 and not active and self.min_replica_count == 0:
                idle_since = self.last_active if self.last_active is not None else 0.0
                if now - idle_since >= self.cooldown_period:
                    desired = 0
        return desired


# --- KPA ---------------------------------------------------------------------------------------


def concurrency(signals: Signals) -> float:
    """Requests in the system: in the engines plus those held in front of them (Knative's activator
    and queue-proxies count both)."""
    engines = sum(u.inflight or 0.0 for u in signals.units if u.ready)
    held = sum(u.queue or 0.0 for u in signals.units if u.ready and not u.draining)
    return engines + held + signals.admission_queue


@dataclass
class KPA:
    target: float  # concurrency per pod
    stable_window: float = 60.0
    panic_window: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    period: float = 2.0
    tolerance: float = 0.0
    min_replicas: int = 0
    max_replicas: int = 100
    panic_rule: Literal["knative", "aibrix"] = "knative"
    down_cooldown: float = 0.0  # AIBrix: lowest recommendation of this window when scaling down
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    panic_since: float | None = None
    max_panic_pods: int = 0
    recommendations: list[tuple[float, int]] = field(default_factory=list)

    @classmethod
    def aibrix(cls, target: float) -> KPA:
        return cls(
            target=target,
            stable_window=180.0,
            panic_window=60.0,
            max_scale_up_rate=2.0,
            period=10.0,
            tolerance=0.1,
            min_replicas=1,
            panic_rule="aibrix",
            down_cooldown=300.0,
        )

    def _average(self, now: float, window: float) -> float:
        values = [v for t, v in self.samples if t > now - window]
        return sum(values) / len(values) if values else 0.0

    def _pods_for(self, value: float, current: int) -> float:
        high, low = self.target * (1 + self.tolerance), self.target * (1 - self.tolerance)
        return math.ceil(value / self.target) if value > high or value < low else current

    def decide(self, signals: Signals, now: float) -> int:
        current = not_draining(signals)
        ready = sum(1 for u in signals.units if u.ready and not u.draining)
        self.samples.append((now, concurrency(signals)))
        while self.samples and self.samples[0][0] <= now - max(self.stable_window, self.panic_window):
            self.samples.popleft()
        stable = self._average(now, self.stable_window)
        panic = self._average(now, self.panic_window)
        # Knative limits the rates against ready pods, AIBrix against the scale's replica count.
        pods = max(1.0, ready if self.panic_rule == "knative" else current)
        max_up = math.ceil(self.max_scale_up_rate * pods)
        max_down = math.floor(pods / self.max_scale_down_rate)
        stable_pods = self._pods_for(stable, current)
        panic_pods = self._pods_for(panic, current)
        desired_stable = int(min(max(stable_pods, max_down), max_up))
        desired_panic = int(min(max(panic_pods, max_down), max_up))
        if self.panic_rule == "knative":
            over = panic_pods / pods >= self.panic_threshold
            if over:
                self.panic_since = now
            elif self.panic_since is not None and now > self.panic_since + self.stable_window:
                self.panic_since, self.max_panic_pods = None, 0
        else:
            over = stable <= 0 or panic / stable > self.panic_threshold
            self.panic_since = now if over else None
        desired = desired_stable
        if self.panic_since is not None:
            desired = max(desired_stable, desired_panic, self.max_panic_pods)  # never down in panic
            self.max_panic_pods = desired
        desired = min(max(desired, self.min_replicas), self.max_replicas)
        if self.down_cooldown > 0:
            desired = self._cool(desired, current, now)
        return desired

    def _cool(self, recommendation: int, current: int, now: float) -> int:
        """AIBrix's stabilisation: within the cooldown window, the lowest recommendation when scaling
        down (its up window is 0 s by default, so scale-up is immediate)."""
        self.recommendations.append((now, recommendation))
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - self.down_cooldown]
        if recommendation >= current:
            return recommendation
        return min(r for _, r in self.recommendations)
