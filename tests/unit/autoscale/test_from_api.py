"""From AutoscalingPolicy to the core's Policy/RolePolicies, and a Decision to status and back."""

from __future__ import annotations

import math
from typing import Any, get_args

import pytest

from phalanx.api.autoscaling_shorthand import autoscaling_policy_for
from phalanx.api.autoscalingpolicy import METRIC_SIGNALS, AutoscalingPolicy
from phalanx.api.errors import SpecError
from phalanx.api.modeldeployment import ModelDeployment
from phalanx.autoscale.from_api import (
    core_policy,
    disaggregated_status,
    format_time,
    history_from_status,
    parse_time,
    role_histories,
    status_from_decision,
)
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
from tests.unit.api.test_autoscalingpolicy import PREFILL_DECODE, RATE_FROM_PROMETHEUS, WAITING_ON_PODS, ours


def policy(data: dict[str, Any]) -> AutoscalingPolicy:
    return AutoscalingPolicy.model_validate(data, strict=True)


def test_every_metric_name_maps_to_a_signal_of_the_core() -> None:
    assert set(METRIC_SIGNALS.values()) == set(get_args(SignalName))


def test_homogeneous_policy_maps_field_by_field() -> None:
    result = core_policy(policy(ours(WAITING_ON_PODS)))
    assert result == Policy(
        min_replicas=1,
        max_replicas=8,
        metrics=(MetricTarget(signal="waiting", target=6.0),),
        tolerance=0.10,
        period=15.0,
        # Written stable policies: the CRD's defaults for what is left out, the written windows.
        scale_up=StepLimit(instances=1, percent=100.0, period=20.0, select="Or", stabilization_window=30.0),
        scale_down=StepLimit(
            instances=1, percent=100.0, period=45.0, select="Or", stabilization_window=240.0
        ),
        # Panic written without a period: the scale-up period stands in for Kthena's 0.
        panic=PanicRule(percent=1000.0, period=20.0, threshold_percent=180.0, hold=120.0),
        pending_timeout=300.0,
        capacity_floor=True,
        observe_only=False,
        history_limit=32,
    )


def test_every_behavior_field_is_carried() -> None:
    result = core_policy(policy(ours(RATE_FROM_PROMETHEUS)))
    assert isinstance(result, Policy)
    assert result.tolerance == pytest.approx(0.05)
    assert result.scale_down == StepLimit(
        instances=2, percent=50.0, period=20.0, select="And", stabilization_window=60.0
    )
    assert result.scale_up == StepLimit(
        instances=3, percent=200.0, period=10.0, select="Or", stabilization_window=0.0
    )
    assert result.panic == PanicRule(percent=300.0, period=3.0, threshold_percent=250.0, hold=20.0)
    # A Prometheus query named after no signal is left out (validation warned about it).
    assert result.metrics == ()
    assert (result.min_replicas, result.max_replicas) == (0, 4)


def test_no_behavior_means_the_webhooks_defaults_and_no_panic() -> None:
    data = ours(WAITING_ON_PODS)
    del data["spec"]["behavior"]
    data["spec"]["observeOnly"] = True
    data["spec"]["period"] = "30s"
    data["spec"]["pendingTimeout"] = "2m"
    data["spec"]["historyLimit"] = 8
    data["spec"]["capacityFloor"] = False
    data["spec"]["capacityUtilizationPercent"] = 75
    data["spec"]["backlogHorizon"] = "1m30s"
    result = core_policy(policy(data))
    assert isinstance(result, Policy)
    assert result.scale_down == StepLimit(
        instances=0, percent=100.0, period=60.0, select="Or", stabilization_window=300.0
    )
    assert result.scale_up == StepLimit(
        instances=4, percent=100.0, period=60.0, select="Or", stabilization_window=0.0
    )
    assert result.panic.threshold_percent == math.inf  # Kthena's default caps panic growth at 0%: no panic
    assert (result.observe_only, result.period, result.pending_timeout) == (True, 30.0, 120.0)
    assert (result.history_limit, result.capacity_floor) == (8, False)
    assert (result.capacity_utilization, result.backlog_horizon) == (0.75, 90.0)


def test_the_api_defaults_are_the_cores() -> None:
    # A policy that leaves the extension fields out plans as the core's own defaults.
    result = core_policy(policy(ours(WAITING_ON_PODS)))
    assert isinstance(result, Policy)
    core = Policy(min_replicas=1, max_replicas=8, metrics=())
    assert (result.capacity_utilization, result.backlog_horizon) == (
        core.capacity_utilization,
        core.backlog_horizon,
    )


def test_disaggregated_policy_maps_roles_and_band() -> None:
    result = core_policy(policy(ours(PREFILL_DECODE)))
    assert isinstance(result, RolePolicies)
    assert set(result.roles) == {"prefill", "decode"}
    prefill, decode = result.roles["prefill"], result.roles["decode"]
    assert prefill.metrics == (MetricTarget(signal="prefill_queued_tokens", target=8000.0),)
    assert (prefill.min_replicas, prefill.max_replicas) == (1, 6)
    # decode inherits spec.metrics; its pod source has no name, so the key names the signal.
    assert decode.metrics == (MetricTarget(signal="waiting", target=4.0),)
    assert (decode.min_replicas, decode.max_replicas) == (2, 12)
    assert result.ratio == RatioBand(
        numerator_role="prefill", denominator_role="decode", min_ratio=0.2, max_ratio=0.75
    )


def test_an_invalid_policy_raises_every_error() -> None:
    data = ours(WAITING_ON_PODS)
    data["spec"]["homogeneousTarget"]["minReplicas"] = 20
    data["spec"]["metrics"][0]["targetValue"] = 0
    with pytest.raises(SpecError) as raised:
        core_policy(policy(data))
    assert [e.field for e in raised.value.errors] == [
        "spec.homogeneousTarget.minReplicas",
        "spec.metrics[0].targetValue",
    ]


def test_the_deployment_shorthand_maps_to_the_core() -> None:
    md = ModelDeployment.model_validate(
        {
            "metadata": {"name": "chat"},
            "spec": {
                "model": "tiny-test",
                "autoscaling": {"maxReplicas": 6, "queuePerGroup": 4, "kvUsage": 0.8, "ttftSeconds": 1.5},
            },
        }
    )
    rendered = autoscaling_policy_for(md, "chat")
    assert rendered is not None
    result = core_policy(rendered)
    assert isinstance(result, Policy)
    assert result.metrics == (
        MetricTarget("queue", 4.0),
        MetricTarget("kv_usage", 0.8),
        MetricTarget("ttft_p95", 1.5),
    )
    assert (result.min_replicas, result.max_replicas) == (1, 6)


# ------------------------------------------------------------------------------------------- status


def test_times_round_trip_to_the_microsecond() -> None:
    for seconds in (0.0, 15.0, 1_796_000_000.123456, 12.5):
        assert parse_time(format_time(seconds)) == pytest.approx(seconds, abs=1e-6)
    assert format_time(0.0) == "1970-01-01T00:00:00.000000Z"
    assert parse_time("2026-12-07T00:00:00Z") == parse_time("2026-12-07T01:00:00+01:00")


HISTORY = History(
    recommendations=(Recommendation(100.0, 2), Recommendation(115.0, 3), Recommendation(130.5, 3)),
    records=(
        DecisionRecord(time=100.0, previous=1, desired=2, mode="Stable", reason="waiting 9 over target 4"),
        DecisionRecord(time=130.5, previous=2, desired=6, mode="Panic", reason="queue at 300% of target"),
    ),
    panic_until=190.5,
    last_scale_up=130.5,
    last_scale_down=40.0,
    capacity_per_unit=1234.5,
)
DECISION = Decision(
    desired=6, current=2, ready=1, mode="Panic", reason="queue at 300% of target", history=HISTORY
)


def test_status_from_decision() -> None:
    status = status_from_decision(DECISION)
    assert (status.name, status.current_replicas, status.desired_replicas, status.ready_replicas) == (
        "",
        2,
        6,
        1,
    )
    assert (status.mode, status.reason) == ("Panic", "queue at 300% of target")
    assert status.last_scale_time == format_time(130.5)
    assert [e.desired for e in status.history] == [2, 6]
    assert status.to_dict()["history"][1] == {
        "time": "1970-01-01T00:02:10.500000Z",
        "previous": 2,
        "desired": 6,
        "mode": "Panic",
        "reason": "queue at 300% of target",
    }


def test_history_is_rebuilt_from_status() -> None:
    status = status_from_decision(DECISION)
    # Through the wire format, as a restarted controller reads it.
    again = type(status).model_validate(status.to_dict(), strict=True)
    assert history_from_status(again) == HISTORY


def test_an_empty_status_is_an_empty_history() -> None:
    assert history_from_status(None) == History()
    empty = status_from_decision(
        Decision(desired=0, current=0, ready=0, mode="Stable", reason="idle", history=History())
    )
    assert empty.last_scale_time is None
    assert history_from_status(empty) == History()


def test_disaggregated_status_and_role_histories() -> None:
    decode = Decision(
        desired=4, current=4, ready=4, mode="Stable", reason="kv_usage within tolerance", history=History()
    )
    status = disaggregated_status(
        {"prefill": DECISION, "decode": decode}, RatioBand("prefill", "decode", 0.25, 2.0)
    )
    assert [r.name for r in status.roles] == ["decode", "prefill"]
    assert status.ratio_status is not None
    assert (status.ratio_status.numerator_role, status.ratio_status.current_ratio) == ("prefill", "1.5")
    histories = role_histories(status)
    assert histories == {"decode": History(), "prefill": HISTORY}
    assert role_histories(None) == {}
    no_band = disaggregated_status({"decode": decode}, None)
    assert no_band.ratio_status is None
