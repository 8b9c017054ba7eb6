"""Checks on an AutoscalingPolicy: every problem at once, each with its field path, value and fix.

Kthena's webhook rules (one target, bounds, ratio band, behaviour windows) plus ours: metric names
the autoscaler can read, and role names that exist in the ModelServing the policy targets
(`check_target`, which needs that ModelServing).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from phalanx.api.autoscalingpolicy import (
    METRIC_SIGNALS,
    AutoscalingPolicy,
    AutoscalingPolicyMetric,
    MetricSource,
    ObjectReference,
    RoleScalingParam,
    duration_seconds,
    effective_behavior,
    metric_signal,
    quantity_value,
)
from phalanx.api.crd import openapi_schema
from phalanx.api.errors import FieldError, Path
from phalanx.api.labels import API_GROUP, GROUP_VERSION
from phalanx.api.modelserving import ModelServing
from phalanx.api.names import is_dns1123_subdomain
from phalanx.api.schema_errors import translate
from phalanx.api.structural import structural_problems

_KTHENA_GROUPS = ("workload.serving.volcano.sh", "workload.volcano.sh", "workload.matrixinfer.ai")
_MAX_WINDOW = 30 * 60.0  # Kthena's bound on every period and window
_SPEC = ("spec",)
_NAMES_FIX = "use a signal or metric name the autoscaler reads: " + ", ".join(sorted(METRIC_SIGNALS))


def parse_autoscaling_policy(data: Any) -> tuple[AutoscalingPolicy | None, list[FieldError]]:
    """One object (from YAML or the API server) -> the policy and every problem found."""
    if not isinstance(data, dict):
        return None, [
            FieldError((), "is not a Kubernetes object", fix="write a mapping with apiVersion and kind")
        ]
    problems: list[FieldError] = []
    api_version = data.get("apiVersion")
    if api_version != GROUP_VERSION:
        kthena = isinstance(api_version, str) and api_version.startswith(_KTHENA_GROUPS)
        fix = f"change apiVersion to {GROUP_VERSION}" + (
            "; the rest of a Kthena manifest is accepted as it is" if kthena else ""
        )
        problems.append(
            FieldError(("apiVersion",), "is not a Phalanx API version", value=api_version, fix=fix)
        )
    if data.get("kind") != "AutoscalingPolicy":
        problems.append(
            FieldError(
                ("kind",),
                "is not AutoscalingPolicy",
                value=data.get("kind"),
                fix="set kind: AutoscalingPolicy",
            )
        )
    if problems:
        return None, problems
    data = copy.deepcopy(data)
    limits = structural_problems(data, openapi_schema("AutoscalingPolicy"))
    try:
        policy = AutoscalingPolicy.model_validate(data, strict=True)
    except ValidationError as exc:
        problems = translate(exc, AutoscalingPolicy)
        reported = {p.path for p in problems}
        return None, problems + [p for p in limits if p.path not in reported]
    problems = validate_autoscaling_policy(policy)
    reported = {p.path for p in problems if p.severity == "error"}
    return policy, problems + [p for p in limits if p.path not in reported]


def validate_autoscaling_policy(policy: AutoscalingPolicy) -> list[FieldError]:
    problems = [*_metadata(policy), *_targets(policy), *_behavior(policy), *_ours(policy)]
    # Roles that inherit spec.metrics would report the same metric once per role.
    return list(dict.fromkeys(problems))


def _metadata(policy: AutoscalingPolicy) -> Iterator[FieldError]:
    name = policy.metadata.name
    if not name:
        yield FieldError(("metadata", "name"), "is required", fix="give the AutoscalingPolicy a name")
    elif not is_dns1123_subdomain(name):
        yield FieldError(
            ("metadata", "name"),
            "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.'",
            value=name,
            fix="use a name like 'llama-70b-autoscaler'",
        )


# ------------------------------------------------------------------------------------------ targets


def _targets(policy: AutoscalingPolicy) -> Iterator[FieldError]:
    spec = policy.spec
    given = [
        name
        for name, target in (
            ("homogeneousTarget", spec.homogeneous_target),
            ("heterogeneousTarget", spec.heterogeneous_target),
            ("disaggregatedTarget", spec.disaggregated_target),
        )
        if target is not None
    ]
    if len(given) != 1:
        yield FieldError(
            _SPEC,
            "must set exactly one target" + (f", not {len(given)} ({', '.join(given)})" if given else ""),
            fix="keep one of homogeneousTarget (a whole ModelServing) and disaggregatedTarget (its roles)",
        )
    if spec.heterogeneous_target is not None:
        yield FieldError(
            (*_SPEC, "heterogeneousTarget"),
            "is not supported: Phalanx does not spread replicas over several ModelServings by cost",
            fix="give each ModelServing its own AutoscalingPolicy with a homogeneousTarget",
        )
    namespace = policy.metadata.namespace
    if spec.homogeneous_target is not None:
        path: Path = (*_SPEC, "homogeneousTarget")
        target = spec.homogeneous_target
        yield from _target_ref(target.target.target_ref, (*path, "target", "targetRef"), namespace)
        yield from _bounds(target.min_replicas, target.max_replicas, path)
        if not spec.metrics:
            yield FieldError(
                (*_SPEC, "metrics"),
                "is required with homogeneousTarget",
                fix="add a metric, e.g. {name: vllm:num_requests_waiting, targetValue: 8}",
            )
        yield from _metrics(spec.metrics, (*_SPEC, "metrics"), target.target.metric_sources)
        yield from _sources(target.target.metric_sources, spec.metrics, (*path, "target", "metricSources"))
    if spec.disaggregated_target is not None:
        yield from _disaggregated(policy)


def _target_ref(ref: ObjectReference, path: Path, namespace: str) -> Iterator[FieldError]:
    if ref.kind not in ("", "ModelServing"):
        yield FieldError(
            (*path, "kind"), "must be ModelServing", value=ref.kind, fix="set kind: ModelServing"
        )
    if not ref.name:
        yield FieldError((*path, "name"), "is required", fix="name the ModelServing to scale")
    if ref.api_version is not None:
        group = ref.api_version.split("/", 1)[0]
        if group not in (API_GROUP, *_KTHENA_GROUPS):
            yield FieldError(
                (*path, "apiVersion"),
                "is not the ModelServing API",
                value=ref.api_version,
                fix=f"set apiVersion: {GROUP_VERSION}, or leave it out",
            )
    if ref.namespace is not None and ref.namespace != namespace:
        yield FieldError(
            (*path, "namespace"),
            f"must be the policy's own namespace ({namespace})",
            value=ref.namespace,
            fix="create the AutoscalingPolicy in the ModelServing's namespace, or leave namespace out",
        )


def _bounds(low: int, high: int, path: Path) -> Iterator[FieldError]:
    if low > high:
        yield FieldError(
            (*path, "minReplicas"),
            f"must not exceed maxReplicas ({high})",
            value=low,
            fix=f"lower minReplicas to at most {high}, or raise maxReplicas",
        )


def _metrics(
    metrics: list[AutoscalingPolicyMetric], path: Path, sources: Mapping[str, MetricSource]
) -> Iterator[FieldError]:
    seen: set[str] = set()
    for index, metric in enumerate(metrics):
        at: Path = (*path, index)
        value = quantity_value(metric.target_value)
        if not value > 0 or math.isinf(value):
            yield FieldError(
                (*at, "targetValue"),
                "must be more than 0",
                value=metric.target_value,
                fix="give a positive target",
            )
        if metric.name in seen:
            yield FieldError(
                (*at, "name"), "is listed twice", value=metric.name, fix="keep one entry per metric name"
            )
        seen.add(metric.name)
        source = sources.get(metric.name)
        if source is not None and source.pod is not None and source.pod.name:
            continue  # the pod source's name is checked with the source
        if metric_signal(metric.name, source) is None and not (source and source.prometheus):
            yield FieldError(
                (*at, "name"), "is not a metric the autoscaler reads", value=metric.name, fix=_NAMES_FIX
            )


def _sources(
    sources: Mapping[str, MetricSource], metrics: list[AutoscalingPolicyMetric], path: Path
) -> Iterator[FieldError]:
    names = {metric.name for metric in metrics}
    for key, source in sources.items():
        at: Path = (*path, key)
        if key not in names:
            yield FieldError(
                at,
                "names no metric of this target",
                value=key,
                fix=f"use a metric name as the key ({', '.join(sorted(names)) or 'none defined'})",
            )
        if (source.pod is None) == (source.prometheus is None):
            yield FieldError(at, "must set exactly one of pod and prometheus", fix="keep one source")
        if source.pod is not None and source.pod.name and source.pod.name not in METRIC_SIGNALS:
            yield FieldError(
                (*at, "pod", "name"),
                "is not a metric the autoscaler reads",
                value=source.pod.name,
                fix=_NAMES_FIX,
            )
        if source.prometheus is not None:
            url = urlparse(source.prometheus.server_url)
            if url.scheme not in ("http", "https") or not url.netloc:
                yield FieldError(
                    (*at, "prometheus", "serverURL"),
                    "is not an http(s) URL",
                    value=source.prometheus.server_url,
                    fix="write the Prometheus server's base URL, e.g. http://prometheus.monitoring.svc:9090",
                )
            if METRIC_SIGNALS.get(key) is None:
                yield FieldError(
                    at,
                    "is a query the autoscaler has no signal for: it is ignored",
                    value=key,
                    fix="name the metric after the signal the query measures (e.g. waiting, kv_usage), "
                    "so its value feeds that signal",
                    severity="warning",
                )


# ----------------------------------------------------------------------------------- disaggregated


def _fixed(role: RoleScalingParam) -> bool:
    # Kthena: a role with equal bounds stays at that size and needs no metrics.
    return role.max_replicas > 0 and role.min_replicas == role.max_replicas


def _disaggregated(policy: AutoscalingPolicy) -> Iterator[FieldError]:
    spec = policy.spec
    target = spec.disaggregated_target
    assert target is not None
    path: Path = (*_SPEC, "disaggregatedTarget")
    yield from _target_ref(target.target_ref, (*path, "targetRef"), policy.metadata.namespace)
    if not 1 <= len(target.roles) <= 2:
        yield FieldError(
            (*path, "roles"),
            f"must name one or two roles, not {len(target.roles)}",
            fix="keep the prefill and decode roles (or one role to scale on its own)",
        )
    for name, role in target.roles.items():
        at: Path = (*path, "roles", name)
        if not name:
            yield FieldError(
                (*path, "roles"),
                "has a role with an empty name",
                fix="use the role's name in the ModelServing",
            )
            continue
        yield from _bounds(role.min_replicas, role.max_replicas, at)
        if role.metrics is not None and not role.metrics:
            yield FieldError(
                (*at, "metrics"), "is empty", fix="leave it out to use spec.metrics, or add a metric"
            )
        metrics = role.metrics if role.metrics else spec.metrics
        if not metrics and not _fixed(role):
            yield FieldError(
                (*at, "metrics"),
                "is required: the role can change size and spec.metrics is empty",
                fix="add metrics to the role or to spec, or set minReplicas equal to maxReplicas",
            )
        metrics_path: Path = (*at, "metrics") if role.metrics else (*_SPEC, "metrics")
        if role.metrics:
            yield from _metrics(role.metrics, metrics_path, role.metric_sources)
        else:
            yield from _metrics(spec.metrics, metrics_path, role.metric_sources)
        yield from _sources(role.metric_sources, metrics, (*at, "metricSources"))
    yield from _ratio(policy)


def _ratio(policy: AutoscalingPolicy) -> Iterator[FieldError]:
    target = policy.spec.disaggregated_target
    assert target is not None
    band = target.ratio_constraint
    if band is None:
        return
    path: Path = (*_SPEC, "disaggregatedTarget", "ratioConstraint")
    if len(target.roles) < 2:
        yield FieldError(
            path, "needs two roles in roles", fix="add the other role, or remove ratioConstraint"
        )
    if band.numerator_role == band.denominator_role:
        yield FieldError(
            (*path, "denominatorRole"),
            "must differ from numeratorRole",
            value=band.denominator_role,
            fix="put the prefill role over the decode role",
        )
    for key, role in (("numeratorRole", band.numerator_role), ("denominatorRole", band.denominator_role)):
        if role not in target.roles:
            yield FieldError(
                (*path, key),
                "is not one of roles",
                value=role,
                fix=f"use one of {', '.join(sorted(target.roles)) or 'the roles you list'}",
            )
    low, high = quantity_value(band.min_ratio), quantity_value(band.max_ratio)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= 0:
        yield FieldError(
            (*path, "maxRatio"),
            "must be a finite number above 0",
            value=band.max_ratio,
            fix="e.g. maxRatio: '1'",
        )
        return
    if low > high:
        yield FieldError(
            (*path, "minRatio"),
            f"must not exceed maxRatio ({band.max_ratio})",
            value=band.min_ratio,
            fix="swap minRatio and maxRatio",
        )
        return
    numerator, denominator = target.roles.get(band.numerator_role), target.roles.get(band.denominator_role)
    if numerator is None or denominator is None:
        return
    if (numerator.min_replicas == 0) != (denominator.min_replicas == 0):
        yield FieldError(
            path,
            "needs both roles to scale to zero together: one has minReplicas 0, the other not",
            fix="give both roles minReplicas 0, or both at least 1",
        )
    if numerator.min_replicas / denominator.max_replicas > high:
        yield FieldError(
            path,
            f"cannot be met: {band.numerator_role} minReplicas {numerator.min_replicas} over "
            f"{band.denominator_role} maxReplicas {denominator.max_replicas} "
            f"is above maxRatio {band.max_ratio}",
            fix="lower the numerator's minReplicas, raise the denominator's maxReplicas, or widen the band",
        )
    if denominator.min_replicas > 0 and numerator.max_replicas / denominator.min_replicas < low:
        yield FieldError(
            path,
            f"cannot be met: {band.numerator_role} maxReplicas {numerator.max_replicas} over "
            f"{band.denominator_role} minReplicas {denominator.min_replicas} "
            f"is below minRatio {band.min_ratio}",
            fix="raise the numerator's maxReplicas, lower the denominator's minReplicas, or widen the band",
        )


# ------------------------------------------------------------------------------------------ behaviour


def _behavior(policy: AutoscalingPolicy) -> Iterator[FieldError]:
    behavior = effective_behavior(policy.spec)
    assert behavior.scale_up is not None and behavior.scale_down is not None
    path: Path = (*_SPEC, "behavior")
    up = behavior.scale_up
    for at, stable in (
        ((*path, "scaleUp", "stablePolicy"), up.stable_policy),
        ((*path, "scaleDown"), behavior.scale_down),
    ):
        assert stable is not None
        yield from _window((*at, "period"), stable.period)
        if stable.stabilization_window is not None:
            yield from _window((*at, "stabilizationWindow"), stable.stabilization_window)
    assert up.panic_policy is not None
    yield from _window((*path, "scaleUp", "panicPolicy", "period"), up.panic_policy.period)
    yield from _window((*path, "scaleUp", "panicPolicy", "panicModeHold"), up.panic_policy.panic_mode_hold)


def _window(path: Path, text: str) -> Iterator[FieldError]:
    if duration_seconds(text) > _MAX_WINDOW:
        yield FieldError(path, "must be at most 30m", value=text, fix="use a duration between 0s and 30m")


def _ours(policy: AutoscalingPolicy) -> Iterator[FieldError]:
    spec = policy.spec
    if not 1.0 <= duration_seconds(spec.period) <= _MAX_WINDOW:
        yield FieldError(
            (*_SPEC, "period"), "must be between 1s and 30m", value=spec.period, fix="e.g. period: 15s"
        )
    if duration_seconds(spec.pending_timeout) <= 0:
        yield FieldError(
            (*_SPEC, "pendingTimeout"),
            "must be more than 0",
            value=spec.pending_timeout,
            fix="give the time a new group may stay Pending, e.g. 5m",
        )
    if not 1.0 <= duration_seconds(spec.backlog_horizon) <= _MAX_WINDOW:
        yield FieldError(
            (*_SPEC, "backlogHorizon"),
            "must be between 1s and 30m",
            value=spec.backlog_horizon,
            fix="give the time a backlog should be drained in, e.g. 2m",
        )


# --------------------------------------------------------------------------------- against the target


def check_target(policy: AutoscalingPolicy, serving: ModelServing) -> list[FieldError]:
    """What is wrong with `policy` given the ModelServing it names (role names, namespace)."""
    spec = policy.spec
    problems: list[FieldError] = []
    ref_path: Path
    if spec.homogeneous_target is not None:
        ref, ref_path = (
            spec.homogeneous_target.target.target_ref,
            (*_SPEC, "homogeneousTarget", "target", "targetRef"),
        )
    elif spec.disaggregated_target is not None:
        ref, ref_path = spec.disaggregated_target.target_ref, (*_SPEC, "disaggregatedTarget", "targetRef")
    else:
        return problems
    if ref.name != serving.metadata.name or policy.metadata.namespace != serving.metadata.namespace:
        problems.append(
            FieldError(
                (*ref_path, "name"),
                f"names another ModelServing than {serving.metadata.namespace}/{serving.metadata.name}",
                value=ref.name,
                fix="check targetRef.name and the policy's namespace",
            )
        )
        return problems
    if spec.disaggregated_target is not None:
        existing = [role.name for role in serving.spec.template.roles]
        for name in spec.disaggregated_target.roles:
            if name not in existing:
                problems.append(
                    FieldError(
                        (*_SPEC, "disaggregatedTarget", "roles", name),
                        f"is not a role of ModelServing {serving.metadata.name}",
                        value=name,
                        fix=f"use one of its roles: {', '.join(existing)}",
                    )
                )
    return problems
