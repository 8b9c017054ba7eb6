"""What a shell does with one decision (pure), the same under `phalanx up` and in the operator: the
core's events with the policy named, then either nothing, an `AutoscaleObserved` event
(observeOnly) or a count to set, whose outcome is an `Autoscaled` or `AutoscaleFailed` event."""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.autoscale.types import AutoscaleEvent, Decision


@dataclass(frozen=True)
class Act:
    events: tuple[AutoscaleEvent, ...]  # to record now, before any count is set
    replicas: int | None  # the count to set; None: nothing to set
    change: str  # e.g. "role decode replicas 1 -> 2: <reason>"; "" when the count stays
    who: str

    def applied(self) -> AutoscaleEvent:
        return AutoscaleEvent("Normal", "Autoscaled", f"{self.who} set {self.change}")

    def failed(self, why: str) -> AutoscaleEvent:
        return AutoscaleEvent("Warning", "AutoscaleFailed", f"{self.who} cannot set {self.change}: {why}")


def act(
    policy: str,
    decision: Decision,
    replicas: int,
    observe_only: bool,
    role: str | None = None,
    reported: int | None = None,
) -> Act:
    """What to do with `decision` for AutoscalingPolicy `policy`, the target (or `role`) being at
    `replicas` in its spec. The spec, not the units, is compared: a count set earlier and not yet
    carried out is not set again. `reported` is the desired count the policy's status held before
    this pass: observeOnly says what it would set when that changes, not every pass (the units
    never move, so the core asks for the same change each time)."""
    who = f"AutoscalingPolicy {policy}"
    events = tuple(AutoscaleEvent(e.type, e.reason, f"{who}: {e.message}") for e in decision.events)
    if decision.desired == replicas:
        return Act(events, None, "", who)
    what = "replicas" if role is None else f"role {role} replicas"
    change = f"{what} {replicas} -> {decision.desired}: {decision.reason}"
    if not observe_only:
        return Act(events, decision.desired, change, who)
    if decision.desired != reported:
        observed = AutoscaleEvent("Normal", "AutoscaleObserved", f"{who} would set {change}")
        return Act((*events, observed), None, change, who)
    return Act(events, None, change, who)
