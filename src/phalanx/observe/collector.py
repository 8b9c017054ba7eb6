"""The status metrics' collector: reads the current ModelServings and AutoscalingPolicies when
Prometheus scrapes, and exports what `figures` computes from them. The operator and `phalanx up`
register it on the registry their /metrics serves, so both export the same names."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from phalanx.observe.figures import (
    Object,
    count_decisions,
    new_decisions,
    policy_figures,
    serving_figures,
    target_statuses,
)

SERVING = ["namespace", "modelserving"]
TARGET = ["namespace", "autoscalingpolicy", "modelserving", "role"]


@dataclass(frozen=True)
class Snapshot:
    """What the collector reads: ModelServings and AutoscalingPolicies in their JSON form."""

    servings: Sequence[Object] = ()
    policies: Sequence[Object] = ()


@dataclass
class _Decisions:
    """Decisions counted so far for one target, and the newest one counted."""

    seen_until: str = ""
    counts: dict[tuple[str, str], int] = field(default_factory=dict)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class StatusCollector(Collector):
    """`source` returns the state to export now; None exports nothing (a follower replica, or a
    runtime still starting)."""

    def __init__(self, source: Callable[[], Snapshot | None]) -> None:
        self._source = source
        self._decisions: dict[tuple[str, ...], _Decisions] = {}

    def describe(self) -> Iterable[Metric]:
        return _Families().all()  # registration reads no state

    def collect(self) -> Iterable[Metric]:
        snapshot = self._source()
        f = _Families()
        if snapshot is None:
            return f.all()
        for obj in snapshot.servings:
            s = serving_figures(obj)
            key = [s.namespace, s.name]
            f.desired.add_metric(key, s.desired)
            f.groups.add_metric(key, s.groups)
            f.ready.add_metric(key, s.ready)
            f.updated.add_metric(key, s.updated)
            f.rolling.add_metric(key, 1 if s.rolling else 0)
            for name, count in s.by_phase:
                f.phase.add_metric([*key, name], count)
            for name, count in s.by_revision:
                f.revision.add_metric([*key, name], count)
        live: set[tuple[str, ...]] = set()
        for obj in snapshot.policies:
            for t, unit in zip(policy_figures(obj), target_statuses(obj), strict=True):
                key = [t.namespace, t.policy, t.modelserving, t.role]
                f.policy_desired.add_metric(key, t.desired)
                f.policy_current.add_metric(key, t.current)
                f.policy_ready.add_metric(key, t.ready)
                f.panic.add_metric(key, 1 if t.panic else 0)
                live.add(tuple(key))
                counted = self._count(tuple(key), unit.get("history") or [])
                for (direction, reason), count in sorted(counted.items()):
                    f.decisions.add_metric([*key, direction, reason], count)
        self._decisions = {k: v for k, v in self._decisions.items() if k in live}  # deleted policies go
        return f.all()

    def _count(self, key: tuple[str, ...], history: Sequence[Object]) -> dict[tuple[str, str], int]:
        kept = self._decisions.setdefault(key, _Decisions())
        fresh, kept.seen_until = new_decisions(history, kept.seen_until)
        for pair, count in count_decisions(fresh).items():
            kept.counts[pair] = kept.counts.get(pair, 0) + count
        return kept.counts


class _Families:
    """The exported families, empty: `collect` fills them."""

    def __init__(self) -> None:
        self.desired = _gauge(
            "phalanx_modelserving_desired_groups", "ServingGroups asked for (spec.replicas).", SERVING
        )
        self.groups = _gauge(
            "phalanx_modelserving_groups",
            "ServingGroups that exist (status.replicas: surge and deleting groups included).",
            SERVING,
        )
        self.ready = _gauge(
            "phalanx_modelserving_ready_groups",
            "ServingGroups whose every pod is ready (status.availableReplicas).",
            SERVING,
        )
        self.updated = _gauge(
            "phalanx_modelserving_updated_groups",
            "ServingGroups at the update revision (status.updatedReplicas): rollout progress.",
            SERVING,
        )
        self.rolling = _gauge(
            "phalanx_modelserving_rollout_in_progress",
            "1 while a rolling update is in progress (condition UpdateInProgress), else 0.",
            SERVING,
        )
        self.phase = _gauge(
            "phalanx_modelserving_groups_by_phase",
            "ServingGroups in each phase (Pending, Starting, Ready, Recovering, BackingOff, Draining, "
            "Deleting); every phase is exported, zero included.",
            [*SERVING, "phase"],
        )
        self.revision = _gauge(
            "phalanx_modelserving_groups_by_revision",
            "ServingGroups per revision (the group template's hash), for the revisions that have groups now.",
            [*SERVING, "revision"],
        )
        self.policy_desired = _gauge(
            "phalanx_autoscaling_desired_replicas",
            "Replicas the AutoscalingPolicy last decided, per scaled ModelServing or role.",
            TARGET,
        )
        self.policy_current = _gauge(
            "phalanx_autoscaling_current_replicas",
            "Replicas (not draining) the AutoscalingPolicy counted at its last decision.",
            TARGET,
        )
        self.policy_ready = _gauge(
            "phalanx_autoscaling_ready_replicas",
            "Ready replicas the AutoscalingPolicy counted at its last decision.",
            TARGET,
        )
        self.panic = _gauge(
            "phalanx_autoscaling_panic_mode", "1 while the policy is in panic mode, 0 in stable mode.", TARGET
        )
        self.decisions = CounterMetricFamily(
            "phalanx_autoscaling_decisions",
            "Recorded decisions (a change of count or mode), by direction (up, down, none: mode only) "
            "and the kind of their reason (docs/observability.md lists the kinds).",
            labels=[*TARGET, "direction", "reason"],
        )

    def all(self) -> list[Metric]:
        return [
            self.desired,
            self.groups,
            self.ready,
            self.updated,
            self.rolling,
            self.phase,
            self.revision,
            self.policy_desired,
            self.policy_current,
            self.policy_ready,
            self.panic,
            self.decisions,
        ]
