"""Plain data the autoscaler core works on: the policy, the signals of one pass, the history kept
between passes (rebuilt from the target's status after a restart) and the decision.

A *unit* is what scales as one: a ServingGroup (`spec.replicas`), or one instance of a role when a
role scales on its own (`roles[].replicas`, prefill/decode). Every per-unit signal comes from the
unit's entry pod or from the router, never from worker pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# What a metric target can name. Per-unit averages except where noted.
SignalName = Literal[
    "queue",  # requests the router holds for the unit (the core adds Signals.admission_queue once)
    "inflight",  # requests the router has sent to the unit and not finished
    "waiting",  # the engine's waiting requests (vllm:num_requests_waiting, sglang:num_queue_reqs)
    "running",  # the engine's running requests
    "kv_usage",  # the engine's KV-cache usage, 0..1
    "ttft_p95",  # seconds, from histogram deltas over the last window: an objective guard
    "itl_p95",  # seconds, likewise
    "prefill_queued_tokens",  # prompt tokens sent to a prefill unit and not yet prefilled
]
Mode = Literal["Stable", "Panic"]
SelectPolicy = Literal["Or", "And"]  # Or: the looser of the two limits, And: the tighter
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class StepLimit:
    """How far one direction may move per `period` (Kthena's stablePolicy), and the window whose
    extreme recommendation is used (lowest for scale-up, highest for scale-down)."""

    instances: int = 1
    percent: float = 100.0
    period: float = 15.0
    select: SelectPolicy = "Or"
    stabilization_window: float = 0.0


@dataclass(frozen=True)
class PanicRule:
    """Enter panic when the recommendation reaches `threshold_percent` of the current count; hold it
    `hold` seconds; in panic growth is capped at `percent` per `period` and nothing scales down."""

    percent: float = 1000.0
    period: float = 15.0
    threshold_percent: float = 200.0
    hold: float = 60.0


@dataclass(frozen=True)
class MetricTarget:
    """Scale so that the per-unit value of `signal` stays near `target` (for the p95 signals:
    stays under it, the objective)."""

    signal: SignalName
    target: float


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricTarget, ...]
    tolerance: float = 0.10  # no change while every ratio is within 1 +- tolerance
    period: float = 15.0  # seconds between passes
    scale_up: StepLimit = StepLimit()
    scale_down: StepLimit = StepLimit(stabilization_window=300.0)
    panic: PanicRule = PanicRule()
    pending_timeout: float = 300.0  # a unit not ready after this lowers the target to what fits
    capacity_floor: bool = True  # never fewer units than demand / learned tokens per second per unit
    # Share of a unit's learned capacity the floor plans for: a unit run at 100% queues requests.
    capacity_utilization: float = 0.9
    # A backlog (requests held at the router or waiting in engines) asks for enough units beyond the
    # steady demand to drain it within this many seconds, not for a unit per `target` requests.
    backlog_horizon: float = 120.0
    # Tokens per second one unit is expected to sustain (e.g. the planner's figure), used until one
    # is learned from saturated units; None: unknown, nothing is assumed.
    capacity_prior: float | None = None
    observe_only: bool = False  # decide and report, change nothing
    history_limit: int = 32  # decision records kept (and shown in status)
    unit: str = "group"  # what one unit is called in reasons, e.g. "prefill instance"


@dataclass(frozen=True)
class UnitSignals:
    """One unit as the signals saw it in this pass. None: not known this pass (scrape failed,
    pod not ready); an unknown value is never read as zero."""

    name: str
    ready: bool
    draining: bool = False
    pending_since: float | None = None  # created and not yet ready since this time
    queue: float | None = None
    inflight: float | None = None
    waiting: float | None = None
    running: float | None = None
    kv_usage: float | None = None
    ttft_p95: float | None = None
    itl_p95: float | None = None
    prefill_queued_tokens: float | None = None
    tokens_per_second: float | None = None  # tokens (prompt + output) the unit served per second
    # Mean seconds a request finished in the last window spent in the engine's batch (prefill and
    # decode, not its wait): vllm:request_inference_time_seconds' sum / count deltas.
    request_seconds: float | None = None


@dataclass(frozen=True)
class Signals:
    units: tuple[UnitSignals, ...]
    # Requests the router holds with no unit to send them to; exists at zero units.
    admission_queue: int = 0
    # Tokens per second arriving at the router for this target (prompt + expected output).
    demand_tokens_per_second: float | None = None
    # Requests per second arriving at the router for this target (with the tokens: tokens per request).
    demand_requests_per_second: float | None = None
    # How many more units the platform can place now (local GPU inventory); None: unknown.
    placeable: int | None = None
    # Requests one unit's engine runs at once (vLLM --max-num-seqs, SGLang --max-running-requests),
    # from the engine's arguments; None: unknown.
    max_running: int | None = None
    # Seconds the target's ready units took from creation to ready (the longest of them: a pod's
    # creationTimestamp to its Ready condition's lastTransitionTime); None: not known.
    startup_seconds: float | None = None


@dataclass(frozen=True)
class Recommendation:
    time: float
    replicas: int


@dataclass(frozen=True)
class DecisionRecord:
    """One entry of the bounded history shown in status."""

    time: float
    previous: int
    desired: int
    mode: Mode
    reason: str


@dataclass(frozen=True)
class History:
    """What the core keeps between passes. All of it is written to the policy's status, so a
    restarted controller rebuilds it from there."""

    recommendations: tuple[Recommendation, ...] = ()
    records: tuple[DecisionRecord, ...] = ()
    panic_until: float | None = None
    last_scale_up: float | None = None
    last_scale_down: float | None = None
    # Tokens per second one unit sustains, learned from units that were saturated.
    capacity_per_unit: float | None = None
    # When a unit stayed Pending and the platform cannot say what it can place: the count that
    # was placed, kept as a ceiling until `placement_retry_at`, then scale-up is tried again.
    placement_limit: int | None = None
    placement_retry_at: float | None = None
    # Units not ready at the last pass, (name, pending_since): one found ready now shows how long
    # a unit takes from creation to ready.
    starting: tuple[tuple[str, float], ...] = ()
    # Seconds from creation to ready, learned from the units seen starting; None: not seen yet.
    startup: float | None = None
    # (time, requests per second arriving) of the passes of the last three minutes, and the newest
    # older one: how fast the demand rises, and whether the rise lasts.
    demand: tuple[tuple[float, float], ...] = ()
    # (name, since when) of the units that had requests waiting at every pass since then: only a
    # unit saturated for capacity.SATURATED_FOR teaches its capacity.
    saturated: tuple[tuple[str, float], ...] = ()
    # (time, requests held or waiting) at the last pass: how fast the backlog grows, which shows
    # the arrival rate without the rate window's lag while every ready unit is saturated.
    backlog: tuple[float, float] | None = None


@dataclass(frozen=True)
class AutoscaleEvent:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    ready: int
    mode: Mode
    reason: str  # why `desired` is what it is, in words a user understands
    history: History
    # What each signal alone would ask for (signal name, or "capacity", "admission-queue").
    recommendations: Mapping[str, int] = field(default_factory=dict)
    events: tuple[AutoscaleEvent, ...] = ()

    @property
    def changed(self) -> bool:
        return self.desired != self.current


@dataclass(frozen=True)
class RatioBand:
    """Keep numerator/denominator role instances within [min_ratio, max_ratio] (Kthena's
    ratioConstraint), e.g. prefill:decode."""

    numerator_role: str
    denominator_role: str
    min_ratio: float
    max_ratio: float


@dataclass(frozen=True)
class RolePolicies:
    """Prefill and decode (or any roles) scaled each on its own signals, within a ratio band."""

    roles: Mapping[str, Policy]
    ratio: RatioBand | None = None
