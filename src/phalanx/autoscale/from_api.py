"""From the AutoscalingPolicy resource to the core's plain data, and from the core's decision back to
the resource's status (pure functions).

Times: the core counts seconds since the Unix epoch (the replayer's virtual clock starts at 0); the
status writes them as RFC 3339 UTC with microseconds, so a restarted controller reads back the
same numbers (`history_from_status`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast

from phalanx.api.autoscaling_validation import validate_autoscaling_policy
from phalanx.api.autoscalingpolicy import (
    STATUS_LIST_LIMIT,
    AutoscalingPolicy,
    AutoscalingPolicyMetric,
    AutoscalingPolicyPanicPolicy,
    AutoscalingPolicySpec,
    AutoscalingPolicyStablePolicy,
    BacklogSample,
    DecisionEntry,
    DemandSample,
    DisaggregatedScalingStatus,
    MetricSource,
    RecommendationEntry,
    RoleRatioStatus,
    SaturatedUnit,
    StartingUnit,
    TargetScalingStatus,
    duration_seconds,
    effective_behavior,
    metric_signal,
    quantity_value,
)
from phalanx.api.errors import SpecError, only_errors
from phalanx.autoscale.types import (
    Decision,
    DecisionRecord,
    History,
    MetricTarget,
    PanicRule,
    Policy,
    RatioBand,
    Recommendation,
    RolePolicies,
    SignalName,
    StepLimit,
)


def signal_of(metric: AutoscalingPolicyMetric, source: MetricSource | None) -> SignalName | None:
    """The core signal a metric drives; None for a Prometheus query named after no signal."""
    return cast("SignalName | None", metric_signal(metric.name, source))


def core_policy(policy: AutoscalingPolicy) -> Policy | RolePolicies:
    """The core's policy: a Policy for a homogeneousTarget, RolePolicies for a disaggregatedTarget.
    Raises SpecError with every problem when the policy is not valid."""
    errors = only_errors(validate_autoscaling_policy(policy))
    if errors:
        raise SpecError(errors)
    spec = policy.spec
    if spec.homogeneous_target is not None:
        target = spec.homogeneous_target
        metrics = _targets(spec.metrics, target.target.metric_sources)
        return _policy(spec, target.min_replicas, target.max_replicas, metrics)
    assert spec.disaggregated_target is not None
    target_d = spec.disaggregated_target
    roles = {
        name: _policy(
            spec,
            role.min_replicas,
            role.max_replicas,
            _targets(role.metrics or spec.metrics, role.metric_sources),
        )
        for name, role in target_d.roles.items()
    }
    band = target_d.ratio_constraint
    ratio = (
        RatioBand(
            numerator_role=band.numerator_role,
            denominator_role=band.denominator_role,
            min_ratio=quantity_value(band.min_ratio),
            max_ratio=quantity_value(band.max_ratio),
        )
        if band is not None
        else None
    )
    return RolePolicies(roles=roles, ratio=ratio)


def _targets(
    metrics: list[AutoscalingPolicyMetric], sources: Mapping[str, MetricSource]
) -> tuple[MetricTarget, ...]:
    out: list[MetricTarget] = []
    for metric in metrics:
        signal = signal_of(metric, sources.get(metric.name))
        if signal is not None:
            out.append(MetricTarget(signal=signal, target=quantity_value(metric.target_value)))
    return tuple(out)


def _step(stable: AutoscalingPolicyStablePolicy) -> StepLimit:
    return StepLimit(
        instances=stable.instances,
        percent=float(stable.percent),
        period=duration_seconds(stable.period),
        select=stable.select_policy,
        stabilization_window=duration_seconds(stable.stabilization_window or "0s"),
    )


def _panic(panic: AutoscalingPolicyPanicPolicy, stable_period: float) -> PanicRule:
    # Growth capped at 0% is Kthena's "no panic policy": never enter panic mode.
    threshold = math.inf if panic.percent == 0 else float(panic.panic_threshold_percent)
    period = duration_seconds(panic.period) or stable_period  # Kthena leaves it 0 when not written
    return PanicRule(
        percent=float(panic.percent),
        period=period,
        threshold_percent=threshold,
        hold=duration_seconds(panic.panic_mode_hold),
    )


def _policy(spec: AutoscalingPolicySpec, low: int, high: int, metrics: tuple[MetricTarget, ...]) -> Policy:
    behavior = effective_behavior(spec)
    assert behavior.scale_up is not None and behavior.scale_down is not None
    up = behavior.scale_up
    assert up.stable_policy is not None and up.panic_policy is not None
    scale_up = _step(up.stable_policy)
    return Policy(
        min_replicas=low,
        max_replicas=high,
        metrics=metrics,
        tolerance=spec.tolerance_percent / 100.0,
        period=duration_seconds(spec.period),
        scale_up=scale_up,
        scale_down=_step(behavior.scale_down),
        panic=_panic(up.panic_policy, scale_up.period),
        pending_timeout=duration_seconds(spec.pending_timeout),
        capacity_floor=spec.capacity_floor,
        capacity_utilization=spec.capacity_utilization_percent / 100.0,
        backlog_horizon=duration_seconds(spec.backlog_horizon),
        observe_only=spec.observe_only,
        history_limit=spec.history_limit,
    )


# ---------------------------------------------------------------------------------------- the status


def format_time(seconds: float) -> str:
    """Seconds since the epoch -> '2026-12-07T00:00:00.000000Z'."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """RFC 3339 ('...Z' or with an offset, with or without fractions) -> seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _maybe_time(text: str | None) -> float | None:
    return parse_time(text) if text else None


def _maybe_format(seconds: float | None) -> str | None:
    return format_time(seconds) if seconds is not None else None


def history_from_status(status: TargetScalingStatus | None) -> History:
    """The core's History, rebuilt from what `status_from_decision` wrote."""
    if status is None:
        return History()
    return History(
        recommendations=tuple(
            Recommendation(time=parse_time(entry.time), replicas=entry.replicas)
            for entry in status.recommendations
        ),
        records=tuple(
            DecisionRecord(
                time=parse_time(entry.time),
                previous=entry.previous,
                desired=entry.desired,
                mode=entry.mode,
                reason=entry.reason,
            )
            for entry in status.history
        ),
        panic_until=_maybe_time(status.panic_until),
        last_scale_up=_maybe_time(status.last_scale_up_time),
        last_scale_down=_maybe_time(status.last_scale_down_time),
        capacity_per_unit=status.capacity_per_unit,
        placement_limit=status.placement_limit,
        placement_retry_at=_maybe_time(status.placement_retry_at),
        starting=tuple((unit.name, parse_time(unit.pending_since)) for unit in status.starting),
        startup=status.startup_seconds,
        demand=tuple((parse_time(sample.time), sample.requests_per_second) for sample in status.demand),
        saturated=tuple((unit.name, parse_time(unit.since)) for unit in status.saturated),
        backlog=(parse_time(status.backlog.time), status.backlog.requests) if status.backlog else None,
    )


def status_from_decision(decision: Decision, name: str = "") -> TargetScalingStatus:
    """What the shell writes for one unit (the ModelServing, or role `name`) after a pass."""
    history = decision.history
    scaled = [t for t in (history.last_scale_up, history.last_scale_down) if t is not None]
    return TargetScalingStatus(
        name=name,
        current_replicas=decision.current,
        desired_replicas=decision.desired,
        mode=decision.mode,
        last_scale_time=format_time(max(scaled)) if scaled else None,
        ready_replicas=decision.ready,
        reason=decision.reason,
        history=[
            DecisionEntry(
                time=format_time(r.time), previous=r.previous, desired=r.desired, mode=r.mode, reason=r.reason
            )
            for r in history.records
        ],
        recommendations=[
            RecommendationEntry(time=format_time(r.time), replicas=r.replicas)
            for r in history.recommendations
        ],
        panic_until=_maybe_format(history.panic_until),
        last_scale_up_time=_maybe_format(history.last_scale_up),
        last_scale_down_time=_maybe_format(history.last_scale_down),
        capacity_per_unit=history.capacity_per_unit,
        placement_limit=history.placement_limit,
        placement_retry_at=_maybe_format(history.placement_retry_at),
        # The newest entries where a list is longer than the status holds.
        starting=[
            StartingUnit(name=name, pending_since=format_time(since))
            for name, since in history.starting[-STATUS_LIST_LIMIT:]
        ],
        startup_seconds=history.startup,
        demand=[
            DemandSample(time=format_time(time), requests_per_second=rate)
            for time, rate in history.demand[-STATUS_LIST_LIMIT:]
        ],
        saturated=[
            SaturatedUnit(name=name, since=format_time(since))
            for name, since in history.saturated[-STATUS_LIST_LIMIT:]
        ],
        backlog=(
            BacklogSample(time=format_time(history.backlog[0]), requests=history.backlog[1])
            if history.backlog is not None
            else None
        ),
    )


def disaggregated_status(
    decisions: Mapping[str, Decision], ratio: RatioBand | None
) -> DisaggregatedScalingStatus:
    """Kthena's disaggregatedStatus: one entry per role (sorted by name), and the ratio of the
    desired counts when a band is set."""
    roles = [status_from_decision(decisions[name], name) for name in sorted(decisions)]
    ratio_status = None
    if ratio is not None and ratio.numerator_role in decisions and ratio.denominator_role in decisions:
        numerator = decisions[ratio.numerator_role].desired
        denominator = decisions[ratio.denominator_role].desired
        ratio_status = RoleRatioStatus(
            numerator_role=ratio.numerator_role,
            denominator_role=ratio.denominator_role,
            current_ratio=f"{numerator / denominator:.3g}" if denominator else "",
        )
    return DisaggregatedScalingStatus(roles=roles, ratio_status=ratio_status)


def role_histories(status: DisaggregatedScalingStatus | None) -> dict[str, History]:
    """Per-role History for `autoscale_roles`, rebuilt from disaggregatedStatus."""
    if status is None:
        return {}
    return {entry.name: history_from_status(entry) for entry in status.roles}
