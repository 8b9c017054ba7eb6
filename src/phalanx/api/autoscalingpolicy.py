"""The AutoscalingPolicy resource: what scales a ModelServing (or its roles), on which signals, how fast.

Field names follow Kthena's AutoscalingPolicy (v1.0, the binding merged into the policy) so its
manifests work with only `apiVersion` changed. Differences, each on purpose:
- `heterogeneousTarget` is read but refused by validation: cost-optimised scaling across several
  ModelServings is not built.
- Metric names are mapped to the signals the autoscaler knows (`METRIC_SIGNALS`); an engine metric
  name nobody maps is an error, not a metric that is silently never read.
- Ours: `period`, `pendingTimeout`, `observeOnly`, `historyLimit`, `capacityFloor`,
  `capacityUtilizationPercent`, `backlogHorizon`, and the status
  fields the autoscaler needs to resume after a restart (ready replicas, reason, history, and
  everything else the core keeps between passes).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from phalanx.api.base import ApiModel, Condition, ObjectMeta
from phalanx.api.quantity import QuantityError, parse_quantity

KIND = "AutoscalingPolicy"
SelectPolicy = Literal["Or", "And"]
ScalingMode = Literal["Stable", "Panic"]

# Go's time.Duration text (metav1.Duration): "15s", "1m30s", "0", "1.5h".
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|ms|s|m|h))+)$"
_QUANTITY_SCHEMA_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)"
    r"|(\.[0-9]+))))?$"
)


def duration_seconds(text: str) -> float:
    """'1m30s' -> 90.0 (the text is already checked by the model)."""
    if text == "0":
        return 0.0
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def _duration(value: Any) -> str:
    if isinstance(value, str) and value and (value == "0" or _DURATION_PART.sub("", value) == ""):
        return value
    raise PydanticCustomError(
        "duration",
        "is not a duration",
        {"fix": "write a duration such as '15s', '1m' or '1m30s' (units: ms, s, m, h)"},
    )


def _quantity(value: Any) -> str:
    # A resource.Quantity: YAML numbers (10, 0.5) and strings ("500m") alike; kept as written.
    try:
        parse_quantity(value)
    except QuantityError:
        raise PydanticCustomError(
            "quantity", "is not a quantity", {"fix": "write a positive number such as 10, '0.5' or '500m'"}
        ) from None
    return str(value).strip()


Duration = Annotated[
    str,
    BeforeValidator(_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}),
]
Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": _QUANTITY_SCHEMA_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def quantity_value(text: str) -> float:
    return float(parse_quantity(text))


# --------------------------------------------------------------------------------------- metric names

# Every name a metric may have -> the autoscaler's signal (phalanx.autoscale.types.SignalName).
# Engine names are the engines' own (vLLM, SGLang, `phalanx sim`); router names are our router's.
METRIC_SIGNALS: dict[str, str] = {
    # The signals by their own names.
    "queue": "queue",
    "inflight": "inflight",
    "waiting": "waiting",
    "running": "running",
    "kv_usage": "kv_usage",
    "ttft_p95": "ttft_p95",
    "itl_p95": "itl_p95",
    "prefill_queued_tokens": "prefill_queued_tokens",
    # vLLM (and phalanx sim).
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv_usage",
    "vllm:gpu_cache_usage_perc": "kv_usage",
    "vllm:time_to_first_token_seconds": "ttft_p95",
    "vllm:inter_token_latency_seconds": "itl_p95",
    "vllm:time_per_output_token_seconds": "itl_p95",
    # SGLang.
    "sglang:num_queue_reqs": "waiting",
    "sglang:num_running_reqs": "running",
    "sglang:token_usage": "kv_usage",
    "sglang:time_to_first_token_seconds": "ttft_p95",
    "sglang:inter_token_latency_seconds": "itl_p95",
    "sglang:time_per_output_token_seconds": "itl_p95",
    # Kthena's documented metric key and its runtime's name for the same gauge.
    "num_requests_waiting": "waiting",
    "kthena:num_requests_waiting": "waiting",
    # The Phalanx router.
    "phalanx_router_queue_depth": "queue",
    "phalanx_router_in_flight_requests": "inflight",
    "phalanx_router_time_to_first_token_seconds": "ttft_p95",
    "phalanx_router_inter_token_latency_seconds": "itl_p95",
}


def metric_signal(key: str, source: MetricSource | None) -> str | None:
    """The signal a metric drives: its pod source's metric name, else its key, looked up in
    METRIC_SIGNALS; None when neither is known."""
    if source is not None and source.pod is not None and source.pod.name:
        return METRIC_SIGNALS.get(source.pod.name)
    return METRIC_SIGNALS.get(key)


# ------------------------------------------------------------------------------------------- the spec


class AutoscalingPolicyMetric(ApiModel):
    # A key: a signal or metric name from METRIC_SIGNALS, or any name a Prometheus source defines.
    name: str = Field(min_length=1)
    target_value: Quantity


class AutoscalingPolicyStablePolicy(ApiModel):
    """How far one direction may move per period, and the window whose extreme recommendation is used."""

    instances: int = Field(default=1, ge=0)
    percent: int = Field(default=100, ge=0, le=1000)
    period: Duration = "15s"
    select_policy: SelectPolicy = "Or"
    stabilization_window: Duration | None = None


class AutoscalingPolicyPanicPolicy(ApiModel):
    percent: int = Field(default=1000, ge=0, le=1000)
    period: Duration = "0s"  # Kthena: required, zero when left out
    panic_threshold_percent: int = Field(default=200, ge=110, le=1000)
    panic_mode_hold: Duration = "60s"


class AutoscalingPolicyScaleUpPolicy(ApiModel):
    stable_policy: AutoscalingPolicyStablePolicy | None = None
    panic_policy: AutoscalingPolicyPanicPolicy | None = None


class AutoscalingPolicyBehavior(ApiModel):
    scale_up: AutoscalingPolicyScaleUpPolicy | None = None
    scale_down: AutoscalingPolicyStablePolicy | None = None


class LabelSelectorRequirement(ApiModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class PodMetricSource(ApiModel):
    """Scrape the target's entry pods: `name` is the metric on their page (default: the key)."""

    name: str = ""
    uri: str = Field(default="/metrics", pattern="^/")
    port: int = Field(default=8100, ge=1, le=65535)
    label_selector: LabelSelector | None = None


class PrometheusMetricSource(ApiModel):
    server_url: str = Field(alias="serverURL", min_length=1)
    query: str = Field(min_length=1)
    auth: dict[str, Any] | None = None  # reserved by Kthena, no effect


class MetricSource(ApiModel):
    """Exactly one of pod and prometheus."""

    pod: PodMetricSource | None = None
    prometheus: PrometheusMetricSource | None = None


class ObjectReference(ApiModel):
    """The ModelServing to scale (a core/v1 ObjectReference; kind ModelServing or empty)."""

    api_version: str | None = None
    kind: str = ""
    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class Target(ApiModel):
    target_ref: ObjectReference = Field(default_factory=ObjectReference)
    # Keys are metric names of the policy; a key with no source is read where Phalanx reads it.
    metric_sources: dict[str, MetricSource] = Field(default_factory=dict)


class HomogeneousTarget(ApiModel):
    target: Target = Field(default_factory=Target)
    min_replicas: int = Field(ge=0, le=1_000_000)
    max_replicas: int = Field(ge=1, le=1_000_000)


class HeterogeneousTargetParam(ApiModel):
    target: Target = Field(default_factory=Target)
    cost: int = Field(default=0, ge=0)
    min_replicas: int = Field(ge=0, le=1_000_000)
    max_replicas: int = Field(ge=1, le=1_000_000)


class HeterogeneousTarget(ApiModel):
    params: list[HeterogeneousTargetParam] = Field(default_factory=list)
    cost_expansion_rate_percent: int = Field(default=200, ge=0)


class RoleScalingParam(ApiModel):
    min_replicas: int = Field(ge=0, le=1_000_000)
    max_replicas: int = Field(ge=1, le=1_000_000)
    metrics: list[AutoscalingPolicyMetric] | None = None  # None: the policy's spec.metrics
    metric_sources: dict[str, MetricSource] = Field(default_factory=dict)


class RoleRatioConstraint(ApiModel):
    numerator_role: str
    denominator_role: str
    min_ratio: Quantity
    max_ratio: Quantity


class DisaggregatedTarget(ApiModel):
    target_ref: ObjectReference
    roles: dict[str, RoleScalingParam]
    ratio_constraint: RoleRatioConstraint | None = None


class AutoscalingPolicySpec(ApiModel):
    tolerance_percent: int = Field(default=10, ge=0, le=100)
    metrics: list[AutoscalingPolicyMetric] = Field(default_factory=list)
    behavior: AutoscalingPolicyBehavior | None = None
    homogeneous_target: HomogeneousTarget | None = None
    heterogeneous_target: HeterogeneousTarget | None = None
    disaggregated_target: DisaggregatedTarget | None = None
    # Ours.
    period: Duration = "15s"  # between two decisions (Kthena: the controller's fixed 15 s)
    pending_timeout: Duration = "5m"  # a group still Pending after this lowers the target to what fits
    observe_only: bool = False  # decide and report in status and events, change no replica count
    history_limit: int = Field(default=32, ge=1, le=256)  # decisions kept in status
    capacity_floor: bool = True  # never fewer groups than demand / tokens per second one group serves
    # Share of a group's learned capacity the floor and the backlog rule plan for: a group run at
    # its full rate queues requests.
    capacity_utilization_percent: int = Field(default=90, ge=1, le=100)
    # A backlog asks for the groups that drain it within this time, on top of the steady demand.
    backlog_horizon: Duration = "2m"


# ----------------------------------------------------------------------------------------- the status


class RecommendationEntry(ApiModel):
    time: str  # RFC 3339, microseconds
    replicas: int


class DecisionEntry(ApiModel):
    time: str
    previous: int
    desired: int
    mode: ScalingMode
    reason: str


# Ours: the cap on the status lists the core keeps beside the decision records (units seen
# starting, recent demand, units saturated); a longer list keeps its newest entries.
STATUS_LIST_LIMIT = 256


class StartingUnit(ApiModel):
    """A unit not ready at the last pass, and since when it has been starting."""

    name: str
    pending_since: str  # RFC 3339, microseconds


class SaturatedUnit(ApiModel):
    """A unit that had requests waiting at every pass since `since`."""

    name: str
    since: str  # RFC 3339, microseconds


class DemandSample(ApiModel):
    time: str
    requests_per_second: float


class BacklogSample(ApiModel):
    """Requests held at the router or waiting in engines at the last pass."""

    time: str
    requests: float


class TargetScalingStatus(ApiModel):
    """One scalable unit: the ModelServing (homogeneous) or one role (disaggregated). Kthena's
    fields, then ours: what a restarted autoscaler rebuilds its history from."""

    name: str = ""
    current_replicas: int = 0
    desired_replicas: int = 0
    mode: ScalingMode | None = None
    last_scale_time: str | None = None
    ready_replicas: int = 0
    reason: str = ""
    history: list[DecisionEntry] = Field(default_factory=list)
    recommendations: list[RecommendationEntry] = Field(default_factory=list)
    panic_until: str | None = None
    last_scale_up_time: str | None = None
    last_scale_down_time: str | None = None
    capacity_per_unit: float | None = None  # tokens per second one unit sustains, as learned
    # The placement ceiling kept after a unit stayed Pending where the platform cannot say what
    # it can place, and when scale-up is tried again.
    placement_limit: int | None = None
    placement_retry_at: str | None = None
    starting: list[StartingUnit] = Field(default_factory=list, max_length=STATUS_LIST_LIMIT)
    startup_seconds: float | None = None  # seconds a unit takes from creation to ready, as learned
    demand: list[DemandSample] = Field(default_factory=list, max_length=STATUS_LIST_LIMIT)
    saturated: list[SaturatedUnit] = Field(default_factory=list, max_length=STATUS_LIST_LIMIT)
    backlog: BacklogSample | None = None


class RoleRatioStatus(ApiModel):
    numerator_role: str
    denominator_role: str
    current_ratio: str = ""


class DisaggregatedScalingStatus(ApiModel):
    roles: list[TargetScalingStatus] = Field(default_factory=list)
    ratio_status: RoleRatioStatus | None = None
    ratio_adjusted: bool = False


class AutoscalingPolicyStatus(ApiModel):
    observed_generation: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    homogeneous_status: TargetScalingStatus | None = None
    disaggregated_status: DisaggregatedScalingStatus | None = None
    heterogeneous_status: list[TargetScalingStatus] = Field(default_factory=list)


# Condition types: Kthena's three, and ours for a policy refused because another one owns its target.
CONDITION_READY = "Ready"
CONDITION_TARGET_FOUND = "TargetFound"
CONDITION_RATIO_VIOLATED = "RatioConstraintViolated"
CONDITION_CONFLICT = "ConflictingAutoscaler"


class AutoscalingPolicy(ApiModel):
    api_version: Literal["serving.phalanx.dev/v1alpha1"] = "serving.phalanx.dev/v1alpha1"
    kind: Literal["AutoscalingPolicy"] = "AutoscalingPolicy"
    metadata: ObjectMeta
    spec: AutoscalingPolicySpec
    status: AutoscalingPolicyStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


# ------------------------------------------------------------------------------ the webhook's defaults

# What Kthena's mutating webhook writes for a part of `behavior` that is left out.
DEFAULT_SCALE_DOWN = AutoscalingPolicyStablePolicy(
    instances=0, percent=100, period="1m", select_policy="Or", stabilization_window="5m"
)
DEFAULT_SCALE_UP_STABLE = AutoscalingPolicyStablePolicy(
    instances=4, percent=100, period="1m", select_policy="Or", stabilization_window="0s"
)
# Growth capped at 0% in panic: Kthena's way of leaving panic mode off when it is not configured.
DEFAULT_PANIC = AutoscalingPolicyPanicPolicy(
    percent=0, period="0s", panic_threshold_percent=200, panic_mode_hold="0s"
)


def effective_behavior(spec: AutoscalingPolicySpec) -> AutoscalingPolicyBehavior:
    """`behavior` with every part filled in as Kthena's webhook fills it: a missing part gets the
    webhook's default; a stable policy written without a window gets 5m (down) or 0s (up)."""
    behavior = spec.behavior or AutoscalingPolicyBehavior()
    down = behavior.scale_down
    if down is None:
        down = DEFAULT_SCALE_DOWN
    elif down.stabilization_window is None:
        down = down.model_copy(update={"stabilization_window": "5m"})
    up = behavior.scale_up or AutoscalingPolicyScaleUpPolicy()
    stable = up.stable_policy
    if stable is None:
        stable = DEFAULT_SCALE_UP_STABLE
    elif stable.stabilization_window is None:
        stable = stable.model_copy(update={"stabilization_window": "0s"})
    panic = up.panic_policy or DEFAULT_PANIC
    return AutoscalingPolicyBehavior(
        scale_up=AutoscalingPolicyScaleUpPolicy(stable_policy=stable, panic_policy=panic),
        scale_down=down,
    )
