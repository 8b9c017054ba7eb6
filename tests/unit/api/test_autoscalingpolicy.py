"""AutoscalingPolicy: Kthena-shaped manifests read with only apiVersion changed, defaults (the CRD's and
the webhook's), and every check with its field path, value and fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
import yaml

from phalanx.api.autoscaling_validation import check_target, parse_autoscaling_policy
from phalanx.api.autoscalingpolicy import (
    DEFAULT_PANIC,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP_STABLE,
    METRIC_SIGNALS,
    AutoscalingPolicy,
    duration_seconds,
    effective_behavior,
    metric_signal,
)
from phalanx.api.crd import crd_for_autoscaling_policy
from phalanx.api.errors import FieldError
from phalanx.api.modelserving import ModelServing
from tests.unit.api.test_crd import _validator

KTHENA = "workload.serving.volcano.sh/v1alpha1"
OURS = "serving.phalanx.dev/v1alpha1"

# Kthena's shapes, in our own words: a whole ModelServing on an engine gauge read from the pods.
WAITING_ON_PODS = """
apiVersion: workload.serving.volcano.sh/v1alpha1
kind: AutoscalingPolicy
metadata:
  name: chat-autoscaler
spec:
  tolerancePercent: 10
  metrics:
  - name: num_requests_waiting
    targetValue: 6.0
  behavior:
    scaleUp:
      panicPolicy:
        panicThresholdPercent: 180
        panicModeHold: 2m
      stablePolicy:
        stabilizationWindow: 30s
        period: 20s
    scaleDown:
      stabilizationWindow: 4m
      period: 45s
  homogeneousTarget:
    minReplicas: 1
    maxReplicas: 8
    target:
      targetRef:
        kind: ModelServing
        name: chat
      metricSources:
        num_requests_waiting:
          pod:
            name: vllm:num_requests_waiting
            uri: /metrics
            port: 8000
"""

# A whole ModelServing on a Prometheus query, every behaviour field written.
RATE_FROM_PROMETHEUS = """
apiVersion: workload.serving.volcano.sh/v1alpha1
kind: AutoscalingPolicy
metadata:
  name: web-prom
  namespace: team-a
spec:
  tolerancePercent: 5
  metrics:
  - name: web_rate
    targetValue: "2"
  behavior:
    scaleDown: {period: 20s, stabilizationWindow: 1m, instances: 2, percent: 50, selectPolicy: And}
    scaleUp:
      stablePolicy: {period: 10s, stabilizationWindow: 0s, instances: 3, percent: 200, selectPolicy: Or}
      panicPolicy: {period: 3s, percent: 300, panicThresholdPercent: 250, panicModeHold: 20s}
  homogeneousTarget:
    minReplicas: 0
    maxReplicas: 4
    target:
      targetRef: {kind: ModelServing, name: web}
      metricSources:
        web_rate:
          prometheus:
            serverURL: http://prometheus.monitoring.svc:9090
            query: sum(rate(requests_total{service="web"}[1m]))
"""

# One role scaled on its own (no pair, no ratio).
ONE_ROLE = """
apiVersion: workload.serving.volcano.sh/v1alpha1
kind: AutoscalingPolicy
metadata:
  name: one-role
spec:
  disaggregatedTarget:
    targetRef: {kind: ModelServing, name: split}
    roles:
      worker:
        minReplicas: 1
        maxReplicas: 3
        metrics:
        - name: worker_rate
          targetValue: "0.25"
        metricSources:
          worker_rate:
            prometheus: {serverURL: "https://prom.example:9090", query: "sum(rate(x[2m]))"}
"""

# Prefill and decode, each on its own signals, inside a ratio band.
PREFILL_DECODE = """
apiVersion: workload.serving.volcano.sh/v1alpha1
kind: AutoscalingPolicy
metadata:
  name: pd
spec:
  metrics:
  - name: vllm:num_requests_waiting
    targetValue: 4
  disaggregatedTarget:
    targetRef:
      apiVersion: workload.serving.volcano.sh/v1alpha1
      kind: ModelServing
      name: pd-serving
    roles:
      prefill:
        minReplicas: 1
        maxReplicas: 6
        metrics:
        - name: prefill_queued_tokens
          targetValue: 8k
      decode:
        minReplicas: 2
        maxReplicas: 12
        metricSources:
          vllm:num_requests_waiting:
            pod: {port: 8000, labelSelector: {matchLabels: {side: decode}}}
    ratioConstraint:
      numeratorRole: prefill
      denominatorRole: decode
      minRatio: "0.2"
      maxRatio: 750m
"""

# Panic off by leaving it out; an SGLang gauge; a fixed role with no metrics.
SGLANG_FIXED_ROLE = """
apiVersion: workload.serving.volcano.sh/v1alpha1
kind: AutoscalingPolicy
metadata:
  name: sglang-pd
spec:
  behavior:
    scaleDown: {period: 5s, stabilizationWindow: 0s, instances: 10}
    scaleUp:
      stablePolicy: {period: 5s, instances: 10}
  disaggregatedTarget:
    targetRef: {kind: ModelServing, name: sg}
    roles:
      prefill: {minReplicas: 2, maxReplicas: 2}
      decode:
        minReplicas: 1
        maxReplicas: 5
        metrics:
        - name: sglang:num_queue_reqs
          targetValue: "3"
        metricSources:
          sglang:num_queue_reqs:
            pod: {name: sglang:num_queue_reqs, port: 30000, uri: /metrics}
"""

MANIFESTS = {
    "waiting-on-pods": WAITING_ON_PODS,
    "rate-from-prometheus": RATE_FROM_PROMETHEUS,
    "one-role": ONE_ROLE,
    "prefill-decode": PREFILL_DECODE,
    "sglang-fixed-role": SGLANG_FIXED_ROLE,
}


def _integer(checker: object, value: object) -> bool:
    # The API server takes 6.0 as an integer (Kthena's own examples write targetValue: 10.0).
    del checker
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )


_Validator = jsonschema.validators.extend(
    jsonschema.Draft4Validator,
    type_checker=jsonschema.Draft4Validator.TYPE_CHECKER.redefine("integer", _integer),
)
CRD_VALIDATOR = _Validator(_validator(crd_for_autoscaling_policy()).schema)


def load(text: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def ours(text: str) -> dict[str, Any]:
    data = load(text)
    data["apiVersion"] = OURS
    return data


def parse(data: dict[str, Any]) -> tuple[AutoscalingPolicy | None, list[FieldError]]:
    return parse_autoscaling_policy(data)


def errors(data: dict[str, Any]) -> list[FieldError]:
    return [p for p in parse(data)[1] if p.severity == "error"]


def rendered(data: dict[str, Any]) -> list[str]:
    return [p.render() for p in parse(data)[1]]


# ----------------------------------------------------------------------------------- Kthena manifests


@pytest.mark.parametrize("name", MANIFESTS)
def test_kthena_manifest_is_refused_only_for_its_api_version(name: str) -> None:
    policy, problems = parse(load(MANIFESTS[name]))
    assert policy is None
    assert [(p.field, p.value) for p in problems] == [("apiVersion", KTHENA)]
    assert "the rest of a Kthena manifest is accepted as it is" in problems[0].fix


@pytest.mark.parametrize("name", MANIFESTS)
def test_kthena_manifest_validates_with_only_api_version_changed(name: str) -> None:
    policy, problems = parse(ours(MANIFESTS[name]))
    assert policy is not None
    assert [p.render() for p in problems if p.severity == "error"] == []


@pytest.mark.parametrize("name", MANIFESTS)
def test_kthena_manifest_passes_the_crd_schema(name: str) -> None:
    assert [e.message for e in CRD_VALIDATOR.iter_errors(ours(MANIFESTS[name]))] == []


def test_a_prometheus_query_named_after_no_signal_is_a_warning_saying_it_is_ignored() -> None:
    problems = parse(ours(RATE_FROM_PROMETHEUS))[1]
    assert [(p.severity, p.field) for p in problems] == [
        ("warning", "spec.homogeneousTarget.target.metricSources.web_rate")
    ]
    assert "ignored" in problems[0].message
    assert "name the metric after the signal" in problems[0].fix


def test_a_prometheus_query_named_after_a_signal_is_no_warning() -> None:
    data = ours(RATE_FROM_PROMETHEUS)
    data["spec"]["metrics"][0]["name"] = "queue"
    sources = data["spec"]["homogeneousTarget"]["target"]["metricSources"]
    sources["queue"] = sources.pop("web_rate")
    assert parse(data)[1] == []


def test_fields_read_as_kthena_writes_them() -> None:
    policy = parse(ours(PREFILL_DECODE))[0]
    assert policy is not None
    target = policy.spec.disaggregated_target
    assert target is not None
    assert target.target_ref.api_version == KTHENA
    assert target.roles["prefill"].metrics is not None
    assert target.roles["prefill"].metrics[0].target_value == "8k"
    assert target.roles["decode"].metrics is None  # inherits spec.metrics
    pod = target.roles["decode"].metric_sources["vllm:num_requests_waiting"].pod
    assert pod is not None
    assert (pod.name, pod.uri, pod.port) == ("", "/metrics", 8000)
    assert pod.label_selector is not None and pod.label_selector.match_labels == {"side": "decode"}
    assert target.ratio_constraint is not None
    assert (target.ratio_constraint.min_ratio, target.ratio_constraint.max_ratio) == ("0.2", "750m")
    prom = parse(ours(RATE_FROM_PROMETHEUS))[0]
    assert prom is not None and prom.spec.homogeneous_target is not None
    source = prom.spec.homogeneous_target.target.metric_sources["web_rate"].prometheus
    assert source is not None and source.server_url == "http://prometheus.monitoring.svc:9090"
    assert prom.to_dict()["spec"]["homogeneousTarget"]["target"]["metricSources"]["web_rate"]["prometheus"][
        "serverURL"
    ] == ("http://prometheus.monitoring.svc:9090")


# -------------------------------------------------------------------------------------------- defaults


def minimal() -> dict[str, Any]:
    return {
        "apiVersion": OURS,
        "kind": "AutoscalingPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "metrics": [{"name": "waiting", "targetValue": 4}],
            "homogeneousTarget": {"minReplicas": 1, "maxReplicas": 3, "target": {"targetRef": {"name": "m"}}},
        },
    }


def policy_of(data: dict[str, Any]) -> AutoscalingPolicy:
    policy, problems = parse(data)
    assert policy is not None, [p.render() for p in problems]
    return policy


def test_defaults_of_the_spec() -> None:
    spec = policy_of(minimal()).spec
    assert spec.tolerance_percent == 10
    assert (spec.period, spec.pending_timeout, spec.observe_only) == ("15s", "5m", False)
    assert (spec.history_limit, spec.capacity_floor) == (32, True)
    assert spec.behavior is None


def test_a_policy_without_behavior_gets_the_webhooks_defaults() -> None:
    behavior = effective_behavior(policy_of(minimal()).spec)
    assert behavior.scale_down == DEFAULT_SCALE_DOWN
    assert behavior.scale_up is not None
    assert behavior.scale_up.stable_policy == DEFAULT_SCALE_UP_STABLE
    assert behavior.scale_up.panic_policy == DEFAULT_PANIC
    down = DEFAULT_SCALE_DOWN
    assert (down.instances, down.percent, down.period, down.select_policy, down.stabilization_window) == (
        0,
        100,
        "1m",
        "Or",
        "5m",
    )
    up = DEFAULT_SCALE_UP_STABLE
    assert (up.instances, up.percent, up.period, up.stabilization_window) == (4, 100, "1m", "0s")
    assert (DEFAULT_PANIC.percent, DEFAULT_PANIC.period, DEFAULT_PANIC.panic_mode_hold) == (0, "0s", "0s")
    assert DEFAULT_PANIC.panic_threshold_percent == 200


def test_a_written_stable_policy_gets_the_crds_defaults_and_the_webhooks_window() -> None:
    data = minimal()
    data["spec"]["behavior"] = {"scaleDown": {}, "scaleUp": {"stablePolicy": {"instances": 2}}}
    behavior = effective_behavior(policy_of(data).spec)
    down = behavior.scale_down
    assert down is not None
    assert (down.instances, down.percent, down.period, down.select_policy) == (1, 100, "15s", "Or")
    assert down.stabilization_window == "5m"
    assert behavior.scale_up is not None
    stable = behavior.scale_up.stable_policy
    assert stable is not None
    assert (stable.instances, stable.stabilization_window) == (2, "0s")
    assert behavior.scale_up.panic_policy == DEFAULT_PANIC


def test_a_written_panic_policy_gets_the_crds_defaults() -> None:
    data = minimal()
    data["spec"]["behavior"] = {"scaleUp": {"panicPolicy": {"panicThresholdPercent": 150}}}
    behavior = effective_behavior(policy_of(data).spec)
    assert behavior.scale_up is not None
    panic = behavior.scale_up.panic_policy
    assert panic is not None
    assert (panic.percent, panic.period, panic.panic_threshold_percent, panic.panic_mode_hold) == (
        1000,
        "0s",
        150,
        "60s",
    )
    assert behavior.scale_up.stable_policy == DEFAULT_SCALE_UP_STABLE
    assert behavior.scale_down == DEFAULT_SCALE_DOWN


def test_a_written_window_is_kept() -> None:
    data = minimal()
    data["spec"]["behavior"] = {"scaleDown": {"stabilizationWindow": "0s"}}
    assert effective_behavior(policy_of(data).spec).scale_down is not None
    assert effective_behavior(policy_of(data).spec).scale_down.stabilization_window == "0s"  # type: ignore[union-attr]


def test_pod_source_defaults() -> None:
    data = minimal()
    data["spec"]["homogeneousTarget"]["target"]["metricSources"] = {"waiting": {"pod": {}}}
    target = policy_of(data).spec.homogeneous_target
    assert target is not None
    pod = target.target.metric_sources["waiting"].pod
    assert pod is not None and (pod.name, pod.uri, pod.port) == ("", "/metrics", 8100)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("0s", 0.0),
        ("15s", 15.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2m", 120.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    data = minimal()
    data["spec"]["period"] = text
    assert duration_seconds(policy_of(data).spec.period) == seconds


@pytest.mark.parametrize("text", ["", "15", "1 m", "m", "1d", "-5s", 15])
def test_bad_durations(text: object) -> None:
    data = minimal()
    data["spec"]["pendingTimeout"] = text
    found = [p for p in errors(data) if p.field == "spec.pendingTimeout"]
    assert found, errors(data)
    assert "is not a duration" in found[0].message
    assert "15s" in found[0].fix


# ---------------------------------------------------------------------------------------- metric names


def test_every_engine_and_router_metric_maps_to_a_signal() -> None:
    assert METRIC_SIGNALS["vllm:num_requests_waiting"] == "waiting"
    assert METRIC_SIGNALS["vllm:num_requests_running"] == "running"
    assert METRIC_SIGNALS["vllm:kv_cache_usage_perc"] == "kv_usage"
    assert METRIC_SIGNALS["vllm:gpu_cache_usage_perc"] == "kv_usage"
    assert METRIC_SIGNALS["vllm:time_to_first_token_seconds"] == "ttft_p95"
    assert METRIC_SIGNALS["vllm:inter_token_latency_seconds"] == "itl_p95"
    assert METRIC_SIGNALS["vllm:time_per_output_token_seconds"] == "itl_p95"
    assert METRIC_SIGNALS["sglang:num_queue_reqs"] == "waiting"
    assert METRIC_SIGNALS["sglang:num_running_reqs"] == "running"
    assert METRIC_SIGNALS["phalanx_router_queue_depth"] == "queue"
    assert METRIC_SIGNALS["phalanx_router_in_flight_requests"] == "inflight"


def test_the_names_are_the_ones_our_engines_and_router_export() -> None:
    from phalanx.operator.engine_gauges import REQUEST_GAUGES
    from phalanx.router.metrics import RouterMetrics
    from phalanx.sim.metrics import SimMetrics

    assert set(REQUEST_GAUGES) <= set(METRIC_SIGNALS)
    exported = {
        m.name
        for m in SimMetrics("m", max_model_len=4096, block_size=16, num_gpu_blocks=64).registry.collect()
    } | {m.name for m in RouterMetrics().registry.collect()}
    engine_and_router = {n for n in METRIC_SIGNALS if n.startswith(("vllm:", "phalanx_router_"))}
    missing = sorted(
        engine_and_router - exported - {"vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds"}
    )
    assert missing == []


def test_a_pod_source_name_wins_over_the_key() -> None:
    data = ours(WAITING_ON_PODS)
    policy = policy_of(data)
    target = policy.spec.homogeneous_target
    assert target is not None
    source = target.target.metric_sources["num_requests_waiting"]
    assert metric_signal("num_requests_waiting", source) == "waiting"
    data["spec"]["homogeneousTarget"]["target"]["metricSources"]["num_requests_waiting"]["pod"]["name"] = (
        "vllm:kv_cache_usage_perc"
    )
    target = policy_of(data).spec.homogeneous_target
    assert target is not None
    assert (
        metric_signal("num_requests_waiting", target.target.metric_sources["num_requests_waiting"])
        == "kv_usage"
    )
    assert metric_signal("whatever", None) is None


def test_an_unknown_metric_name_is_an_error_listing_the_accepted_names() -> None:
    data = minimal()
    data["spec"]["metrics"] = [{"name": "vllm:num_requests_swapped", "targetValue": 1}]
    (problem,) = errors(data)
    assert (problem.field, problem.value) == ("spec.metrics[0].name", "vllm:num_requests_swapped")
    for name in ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "queue", "phalanx_router_queue_depth"):
        assert name in problem.fix


def test_an_unknown_pod_metric_is_an_error_on_the_sources_name() -> None:
    data = minimal()
    data["spec"]["homogeneousTarget"]["target"]["metricSources"] = {
        "waiting": {"pod": {"name": "sglang:nope"}}
    }
    (problem,) = errors(data)
    assert problem.field == "spec.homogeneousTarget.target.metricSources.waiting.pod.name"
    assert "vllm:num_requests_waiting" in problem.fix


# ----------------------------------------------------------------------------------------------- checks


def edit(change: Callable[[dict[str, Any]], None], base: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(base if base is not None else minimal())
    change(data)
    return data


def pd() -> dict[str, Any]:
    return ours(PREFILL_DECODE)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        parts = path.split(".")
        node = data
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[parts[-1]] = value

    return change


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        parts = path.split(".")
        node = data
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    return change


HOMOGENEOUS_CASES = [
    ("no-name", _set("metadata.name", ""), "metadata.name", "is required"),
    ("bad-name", _set("metadata.name", "Big_Name"), "metadata.name", "DNS-1123 subdomain"),
    (
        "min-above-max",
        _set("spec.homogeneousTarget.minReplicas", 5),
        "spec.homogeneousTarget.minReplicas",
        "must not exceed maxReplicas (3)",
    ),
    ("no-metrics", _set("spec.metrics", []), "spec.metrics", "is required with homogeneousTarget"),
    (
        "zero-target",
        _set("spec.metrics.0.targetValue", 0),
        "spec.metrics[0].targetValue",
        "must be more than 0",
    ),
    (
        "bad-quantity",
        _set("spec.metrics.0.targetValue", "lots"),
        "spec.metrics[0].targetValue",
        "is not a quantity",
    ),
    (
        "duplicate-metric",
        _set("spec.metrics", [{"name": "waiting", "targetValue": 1}] * 2),
        "spec.metrics[1].name",
        "is listed twice",
    ),
    (
        "wrong-kind",
        _set("spec.homogeneousTarget.target.targetRef.kind", "Deployment"),
        "spec.homogeneousTarget.target.targetRef.kind",
        "must be ModelServing",
    ),
    (
        "no-target-name",
        _set("spec.homogeneousTarget.target.targetRef.name", ""),
        "spec.homogeneousTarget.target.targetRef.name",
        "is required",
    ),
    (
        "other-api",
        _set("spec.homogeneousTarget.target.targetRef.apiVersion", "apps/v1"),
        "spec.homogeneousTarget.target.targetRef.apiVersion",
        "is not the ModelServing API",
    ),
    (
        "other-namespace",
        _set("spec.homogeneousTarget.target.targetRef.namespace", "elsewhere"),
        "spec.homogeneousTarget.target.targetRef.namespace",
        "must be the policy's own namespace (default)",
    ),
    (
        "source-without-metric",
        _set("spec.homogeneousTarget.target.metricSources", {"running": {"pod": {}}}),
        "spec.homogeneousTarget.target.metricSources.running",
        "names no metric of this target",
    ),
    (
        "source-with-both",
        _set(
            "spec.homogeneousTarget.target.metricSources",
            {"waiting": {"pod": {}, "prometheus": {"serverURL": "http://p:9090", "query": "q"}}},
        ),
        "spec.homogeneousTarget.target.metricSources.waiting",
        "exactly one of pod and prometheus",
    ),
    (
        "source-with-none",
        _set("spec.homogeneousTarget.target.metricSources", {"waiting": {}}),
        "spec.homogeneousTarget.target.metricSources.waiting",
        "exactly one of pod and prometheus",
    ),
    (
        "bad-server",
        _set(
            "spec.homogeneousTarget.target.metricSources",
            {"waiting": {"prometheus": {"serverURL": "prom:9090", "query": "q"}}},
        ),
        "spec.homogeneousTarget.target.metricSources.waiting.prometheus.serverURL",
        "is not an http(s) URL",
    ),
    ("no-target", _del("spec.homogeneousTarget"), "spec", "must set exactly one target"),
    (
        "two-targets",
        _set(
            "spec.disaggregatedTarget",
            {"targetRef": {"name": "m"}, "roles": {"a": {"minReplicas": 1, "maxReplicas": 1}}},
        ),
        "spec",
        "must set exactly one target, not 2",
    ),
    (
        "heterogeneous",
        lambda d: (
            d["spec"].pop("homogeneousTarget"),
            d["spec"].update(heterogeneousTarget={"params": [{"minReplicas": 1, "maxReplicas": 2}]}),
        ),
        "spec.heterogeneousTarget",
        "is not supported",
    ),
    (
        "long-window",
        _set("spec.behavior", {"scaleDown": {"stabilizationWindow": "31m"}}),
        "spec.behavior.scaleDown.stabilizationWindow",
        "must be at most 30m",
    ),
    (
        "long-up-period",
        _set("spec.behavior", {"scaleUp": {"stablePolicy": {"period": "1h"}}}),
        "spec.behavior.scaleUp.stablePolicy.period",
        "must be at most 30m",
    ),
    (
        "long-panic-hold",
        _set("spec.behavior", {"scaleUp": {"panicPolicy": {"panicModeHold": "45m"}}}),
        "spec.behavior.scaleUp.panicPolicy.panicModeHold",
        "must be at most 30m",
    ),
    (
        "low-panic-threshold",
        _set("spec.behavior", {"scaleUp": {"panicPolicy": {"panicThresholdPercent": 100}}}),
        "spec.behavior.scaleUp.panicPolicy.panicThresholdPercent",
        "110",
    ),
    (
        "big-percent",
        _set("spec.behavior", {"scaleDown": {"percent": 1001}}),
        "spec.behavior.scaleDown.percent",
        "1000",
    ),
    (
        "bad-select",
        _set("spec.behavior", {"scaleDown": {"selectPolicy": "Max"}}),
        "spec.behavior.scaleDown.selectPolicy",
        "Or",
    ),
    ("tolerance", _set("spec.tolerancePercent", 101), "spec.tolerancePercent", "100"),
    ("short-period", _set("spec.period", "500ms"), "spec.period", "must be between 1s and 30m"),
    ("zero-pending", _set("spec.pendingTimeout", "0s"), "spec.pendingTimeout", "must be more than 0"),
    ("history", _set("spec.historyLimit", 0), "spec.historyLimit", "1"),
    (
        "no-utilization",
        _set("spec.capacityUtilizationPercent", 0),
        "spec.capacityUtilizationPercent",
        "must be at least 1 (got 0)",
    ),
    (
        "over-utilization",
        _set("spec.capacityUtilizationPercent", 120),
        "spec.capacityUtilizationPercent",
        "must be at most 100 (got 120)",
    ),
    ("zero-horizon", _set("spec.backlogHorizon", "0s"), "spec.backlogHorizon", "must be between 1s and 30m"),
    ("long-horizon", _set("spec.backlogHorizon", "1h"), "spec.backlogHorizon", "(got '1h')"),
    ("bad-horizon", _set("spec.backlogHorizon", "2 min"), "spec.backlogHorizon", "is not a duration"),
    ("unknown-field", _set("spec.minReplicas", 1), "spec.minReplicas", ""),
]


@pytest.mark.parametrize(
    ("case", "change", "field", "message"), HOMOGENEOUS_CASES, ids=[c[0] for c in HOMOGENEOUS_CASES]
)
def test_homogeneous_checks(
    case: str, change: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    found = [p for p in errors(edit(change)) if p.field == field]
    assert found, f"{case}: {rendered(edit(change))}"
    assert message in found[0].render()
    assert found[0].fix, found[0].render()


PD_CASES = [
    (
        "too-many-roles",
        _set("spec.disaggregatedTarget.roles.third", {"minReplicas": 1, "maxReplicas": 1}),
        "spec.disaggregatedTarget.roles",
        "one or two roles, not 3",
    ),
    (
        "role-min-above-max",
        _set("spec.disaggregatedTarget.roles.decode.minReplicas", 13),
        "spec.disaggregatedTarget.roles.decode.minReplicas",
        "must not exceed maxReplicas (12)",
    ),
    (
        "empty-role-metrics",
        _set("spec.disaggregatedTarget.roles.prefill.metrics", []),
        "spec.disaggregatedTarget.roles.prefill.metrics",
        "is empty",
    ),
    (
        "no-metrics-anywhere",
        _set("spec.metrics", []),
        "spec.disaggregatedTarget.roles.decode.metrics",
        "is required",
    ),
    (
        "role-unknown-metric",
        _set("spec.disaggregatedTarget.roles.prefill.metrics.0.name", "prefill_bytes"),
        "spec.disaggregatedTarget.roles.prefill.metrics[0].name",
        "is not a metric",
    ),
    (
        "role-source-key",
        _set("spec.disaggregatedTarget.roles.prefill.metricSources", {"waiting": {"pod": {}}}),
        "spec.disaggregatedTarget.roles.prefill.metricSources.waiting",
        "names no metric",
    ),
    (
        "same-roles",
        _set("spec.disaggregatedTarget.ratioConstraint.denominatorRole", "prefill"),
        "spec.disaggregatedTarget.ratioConstraint.denominatorRole",
        "must differ",
    ),
    (
        "missing-role",
        _set("spec.disaggregatedTarget.ratioConstraint.numeratorRole", "encode"),
        "spec.disaggregatedTarget.ratioConstraint.numeratorRole",
        "is not one of roles",
    ),
    (
        "band-upside-down",
        _set("spec.disaggregatedTarget.ratioConstraint.minRatio", "2"),
        "spec.disaggregatedTarget.ratioConstraint.minRatio",
        "must not exceed maxRatio",
    ),
    (
        "zero-max",
        _set("spec.disaggregatedTarget.ratioConstraint.maxRatio", "0"),
        "spec.disaggregatedTarget.ratioConstraint.maxRatio",
        "above 0",
    ),
    (
        "zero-together",
        _set("spec.disaggregatedTarget.roles.prefill.minReplicas", 0),
        "spec.disaggregatedTarget.ratioConstraint",
        "scale to zero together",
    ),
    (
        "band-too-low",
        _set("spec.disaggregatedTarget.roles.prefill.minReplicas", 10),
        "spec.disaggregatedTarget.ratioConstraint",
        "is above maxRatio",
    ),
    (
        "band-too-high",
        lambda d: (
            _set("spec.disaggregatedTarget.ratioConstraint.minRatio", "700m")(d),
            _set("spec.disaggregatedTarget.roles.decode.minReplicas", 10)(d),
        ),
        "spec.disaggregatedTarget.ratioConstraint",
        "is below minRatio",
    ),
    (
        "one-role-with-band",
        _del("spec.disaggregatedTarget.roles.decode"),
        "spec.disaggregatedTarget.ratioConstraint",
        "needs two roles",
    ),
]


@pytest.mark.parametrize(("case", "change", "field", "message"), PD_CASES, ids=[c[0] for c in PD_CASES])
def test_disaggregated_checks(
    case: str, change: Callable[[dict[str, Any]], None], field: str, message: str
) -> None:
    found = [p for p in errors(edit(change, pd())) if p.field == field]
    assert found, f"{case}: {rendered(edit(change, pd()))}"
    assert message in found[0].render()
    assert found[0].fix


def test_every_problem_is_reported_at_once() -> None:
    data = minimal()
    data["metadata"]["name"] = ""
    data["spec"]["metrics"] = [{"name": "nope", "targetValue": 0}]
    data["spec"]["homogeneousTarget"]["minReplicas"] = 9
    data["spec"]["period"] = "2h"
    fields = [p.field for p in errors(data)]
    assert fields == [
        "metadata.name",
        "spec.homogeneousTarget.minReplicas",
        "spec.metrics[0].targetValue",
        "spec.metrics[0].name",
        "spec.period",
    ]


def test_an_inherited_metric_is_reported_once_not_once_per_role() -> None:
    data = pd()
    data["spec"]["metrics"][0]["targetValue"] = 0
    data["spec"]["disaggregatedTarget"]["roles"]["prefill"].pop("metrics")
    found = [p for p in errors(data) if p.field == "spec.metrics[0].targetValue"]
    assert len(found) == 1


def test_a_fixed_role_needs_no_metrics() -> None:
    assert errors(ours(SGLANG_FIXED_ROLE)) == []


def test_not_a_mapping_and_wrong_kind() -> None:
    assert parse([])[0] is None  # type: ignore[arg-type]
    data = minimal()
    data["kind"] = "ModelServing"
    assert [p.field for p in errors(data)] == ["kind"]


# ----------------------------------------------------------------------------------- against the target


def serving(name: str = "pd-serving", roles: tuple[str, ...] = ("prefill", "decode")) -> ModelServing:
    pod = {"spec": {"containers": [{"name": "engine", "image": "x"}]}}
    return ModelServing.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"template": {"roles": [{"name": r, "entryTemplate": pod} for r in roles]}},
        }
    )


def test_check_target_passes_when_roles_exist() -> None:
    assert check_target(policy_of(pd()), serving()) == []
    assert check_target(policy_of(minimal()), serving("m", ("engine",))) == []


def test_check_target_names_a_missing_role_and_the_roles_there_are() -> None:
    (problem,) = check_target(policy_of(pd()), serving(roles=("prefill", "generate")))
    assert problem.field == "spec.disaggregatedTarget.roles.decode"
    assert "is not a role of ModelServing pd-serving" in problem.message
    assert "prefill, generate" in problem.fix


def test_check_target_refuses_another_serving() -> None:
    (problem,) = check_target(policy_of(minimal()), serving("other", ("engine",)))
    assert problem.field == "spec.homogeneousTarget.target.targetRef.name"
    assert problem.value == "m"
