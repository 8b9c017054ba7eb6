"""`autoscale_roles`: prefill and decode (or any roles) each decided on its own policy and
signals, then held together.

- Through zero together: while any role runs, every role keeps at least one instance (decode
  without prefill, or prefill without decode, serves nothing); all go to zero only in the pass in
  which every role's own decision is zero, and all come back in the pass in which one does.
- The ratio band: when numerator/denominator leaves [min_ratio, max_ratio], the lagging role is
  raised (capacity the metrics asked for is never given up for the ratio's sake). When its max
  prevents that, it goes to its max and the other role is lowered to the band's edge, not below
  its min nor to zero; if the bounds leave no count inside the band, the counts stay out of it, the reason
  says so and a Warning `RatioOutOfBand` is raised.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.record import append_record
from phalanx.autoscale.types import (
    AutoscaleEvent,
    Decision,
    DecisionRecord,
    History,
    Policy,
    RatioBand,
    RolePolicies,
    Signals,
)

EPSILON = 1e-9  # ratios are compared as floats: 1/3 must count as inside a band starting at 0.3333


def amend(decision: Decision, desired: int, clause: str, now: float, policy: Policy) -> Decision:
    """The decision with another count (or the same) and the clause that explains it; this pass's
    record too."""
    end = " (observe only: not applied)." if decision.reason.endswith("(observe only: not applied).") else "."
    reason = decision.reason.removesuffix(end) + f"; {clause}{end}"
    old = decision.history
    earlier = old.records[:-1] if old.records and old.records[-1].time == now else old.records
    record = DecisionRecord(now, decision.current, desired, decision.mode, reason)
    history = dataclasses.replace(
        old,
        records=append_record(earlier, record, policy.history_limit),
        last_scale_up=now if desired > decision.current else old.last_scale_up,
        last_scale_down=now if desired < decision.current else old.last_scale_down,
    )
    return dataclasses.replace(decision, desired=desired, reason=reason, history=history)


def in_band(numerator: int, denominator: int, band: RatioBand) -> bool:
    if denominator == 0:
        return numerator == 0
    ratio = numerator / denominator
    return band.min_ratio - EPSILON <= ratio <= band.max_ratio + EPSILON


def enforce_band(
    counts: Mapping[str, int], policies: Mapping[str, Policy], band: RatioBand
) -> tuple[dict[str, int], str | None]:
    """Counts moved into the band (see the module's doc) and a sentence when anything moved."""
    top, bottom = band.numerator_role, band.denominator_role
    n, d = counts[top], counts[bottom]
    result = dict(counts)
    if (n == 0 and d == 0) or in_band(n, d, band):
        return result, None
    if n < band.min_ratio * d:  # too few of the numerator's role
        lagging, other = top, bottom
        need = math.ceil(band.min_ratio * d - EPSILON)
        fit = math.floor(policies[top].max_replicas / band.min_ratio + EPSILON)  # beside the max
    else:  # too few of the denominator's role
        lagging, other = bottom, top
        unreachable = policies[bottom].max_replicas + 1
        need = math.ceil(n / band.max_ratio - EPSILON) if band.max_ratio > 0 else unreachable
        fit = math.floor(band.max_ratio * policies[bottom].max_replicas + EPSILON)
    edges = f"{band.min_ratio:g}-{band.max_ratio:g}"
    within = f"{top}:{bottom} within {edges}"
    if need <= policies[lagging].max_replicas:
        result[lagging] = max(need, policies[lagging].min_replicas)
        note = f"{lagging} raised to {result[lagging]} to keep {within}"
    else:
        result[lagging] = policies[lagging].max_replicas
        # Never below its min, nor to zero while the lagging role runs: that would serve nothing.
        result[other] = max(min(fit, counts[other]), policies[other].min_replicas, 1)
        note = f"{lagging} is at its maximum {result[lagging]}, so {other} lowered to {result[other]}"
        note += f" to keep {within}"
    if not in_band(result[top], result[bottom], band):
        note = f"{top}:{bottom} stays outside {edges}: the roles' min and max allow no count inside it"
    return result, note


def autoscale_roles(
    policies: RolePolicies, signals: Mapping[str, Signals], now: float, history: Mapping[str, History]
) -> Mapping[str, Decision]:
    decisions = {
        role: autoscale(policy, signals.get(role, Signals(units=())), now, history.get(role, History()))
        for role, policy in policies.roles.items()
    }
    if any(d.desired > 0 for d in decisions.values()):
        for role, decision in decisions.items():
            if decision.desired == 0 and policies.roles[role].max_replicas > 0:
                clause = "raised to 1: another role runs, and one role alone serves nothing"
                decisions[role] = amend(decision, 1, clause, now, policies.roles[role])
    band = policies.ratio
    if band is None or band.numerator_role not in decisions or band.denominator_role not in decisions:
        return decisions
    counts, note = enforce_band({r: d.desired for r, d in decisions.items()}, policies.roles, band)
    if note is None:
        return decisions
    outside = not in_band(counts[band.numerator_role], counts[band.denominator_role], band)
    for role, decision in decisions.items():
        if outside or counts[role] != decision.desired:
            decisions[role] = amend(decision, counts[role], note, now, policies.roles[role])
    if outside:
        warning = AutoscaleEvent("Warning", "RatioOutOfBand", note)
        role = band.numerator_role
        decisions[role] = dataclasses.replace(decisions[role], events=(*decisions[role].events, warning))
    return decisions
