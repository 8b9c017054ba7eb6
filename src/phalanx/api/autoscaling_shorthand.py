"""`ModelDeployment.spec.autoscaling`: its checks, and the AutoscalingPolicy it stands for (pure)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.errors import FieldError
from phalanx.api.labels import API_GROUP
from phalanx.api.modeldeployment import DeploymentAutoscaling, ModelDeployment

_PATH = ("spec", "autoscaling")
# Shorthand field -> the signal its AutoscalingPolicy metric names.
SIGNALS = (
    ("queue_per_group", "queue"),
    ("kv_usage", "kv_usage"),
    ("ttft_seconds", "ttft_p95"),
    ("itl_seconds", "itl_p95"),
)
# The shorthand's scale-up limit: 12 more groups or 100% more per minute, the looser. A policy that
# leaves `scaleUp` out gets Kthena's webhook default, 4 or 100%, which holds a steep rise back for
# minutes (bench/autoscale/results.md: the sine 75.5% -> 81.1% within the objective at less cost,
# the 1->4x step 54.6% -> 66.5% at 1.76x oracle-Tc for 1.31x; no larger limit did better on the
# sine, and 13 cost the step more on another seed).
SCALE_UP = {
    "instances": 12,
    "percent": 100,
    "period": "1m",
    "selectPolicy": "Or",
    "stabilizationWindow": "0s",
}


def validate_deployment_autoscaling(md: ModelDeployment) -> Iterator[FieldError]:
    auto = md.spec.autoscaling
    if auto is None:
        return
    if not _targets(auto):
        yield FieldError(
            _PATH,
            "has no target to scale on",
            fix="give at least one of queuePerGroup (e.g. 4), kvUsage (e.g. 0.8), ttftSeconds, itlSeconds",
        )
    if auto.min_replicas > auto.max_replicas:
        yield FieldError(
            (*_PATH, "minReplicas"),
            f"must not exceed maxReplicas ({auto.max_replicas})",
            value=auto.min_replicas,
            fix=f"lower minReplicas to at most {auto.max_replicas}, or raise maxReplicas",
        )
    elif not auto.min_replicas <= md.spec.replicas <= auto.max_replicas:
        yield FieldError(
            ("spec", "replicas"),
            f"is outside autoscaling's {auto.min_replicas}..{auto.max_replicas}: the autoscaler moves it "
            "inside at its first decision",
            value=md.spec.replicas,
            fix="set replicas within minReplicas..maxReplicas, or leave it to the autoscaler",
            severity="warning",
        )


def _number(value: float) -> str:
    # A quantity as a plain decimal (str(1e-05) would be '1e-05').
    return format(Decimal(repr(value)).normalize(), "f")


def _targets(auto: DeploymentAutoscaling) -> list[dict[str, Any]]:
    out = []
    for field, signal in SIGNALS:
        value = getattr(auto, field)
        if value is not None:
            out.append({"name": signal, "targetValue": _number(value)})
    return out


def autoscaling_policy_for(md: ModelDeployment, serving: str) -> AutoscalingPolicy | None:
    """The AutoscalingPolicy `spec.autoscaling` stands for, scaling ModelServing `serving`
    (None without autoscaling). Its signals are Phalanx's own, so it needs no metricSources."""
    auto = md.spec.autoscaling
    if auto is None:
        return None
    return AutoscalingPolicy.model_validate(
        {
            "metadata": {
                "name": md.name,
                "namespace": md.metadata.namespace,
                "labels": {f"{API_GROUP}/deployment": md.name},
            },
            "spec": {
                "metrics": _targets(auto),
                "observeOnly": auto.observe_only,
                "behavior": {"scaleUp": {"stablePolicy": SCALE_UP}},
                "homogeneousTarget": {
                    "minReplicas": auto.min_replicas,
                    "maxReplicas": auto.max_replicas,
                    "target": {"targetRef": {"kind": "ModelServing", "name": serving}},
                },
            },
        }
    )
