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
- One room: the roles' new units are placed together (`Fits`). When all of them do not fit, what
  fits is split in proportion to the asks, one unit at a time to the role furthest behind its
  share; a role whose unit no longer fits stops and the others go on (units of different sizes).
  Each step keeps the ratio band (the partner is raised with it) and no role at zero beside a
  running one; units a role's min asks for are not lowered but take their room first; the reasons
  name the split.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from phalanx.autoscale.core import autoscale
from phalanx.autoscale.placement import Fits
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


def one_more(
    grant: Mapping[str, int],
    role: str,
    asks: Mapping[str, int],
    bases: Mapping[str, int],
    band: RatioBand | None,
) -> dict[str, int] | None:
    """`grant` with one more unit of `role`, and the other roles raised with it where the band or
    "no role alone" needs them (None: their asks do not cover it)."""
    trial = {**grant, role: grant[role] + 1}
    total = {r: bases[r] + trial[r] for r in trial}
    for other in trial:  # one role alone serves nothing
        if total[other] == 0 and asks[other] > 0:
            trial[other], total[other] = 1, bases[other] + 1
    if band is not None:
        top, bottom = band.numerator_role, band.denominator_role
        if total[top] > band.max_ratio * total[bottom] + EPSILON:
            if band.max_ratio <= 0:
                return None
            lagging, need = bottom, math.ceil(total[top] / band.max_ratio - EPSILON)
        elif total[top] < band.min_ratio * total[bottom] - EPSILON:
            lagging, need = top, math.ceil(band.min_ratio * total[bottom] - EPSILON)
        else:
            return trial
        trial[lagging] = max(trial[lagging], need - bases[lagging])
        if not in_band(bases[top] + trial[top], bases[bottom] + trial[bottom], band):
            return None
    return trial if all(trial[r] <= asks[r] for r in trial) else None


def fill(
    asks: Mapping[str, int], bases: Mapping[str, int], fits: Fits, band: RatioBand | None = None
) -> dict[str, int]:
    """How many of each role's `asks` new units the room holds together: one unit at a time to the
    role with the smallest share of its ask granted (the larger ask first on a tie), until none
    fits. `bases`: each role's count before its new units, for the band."""
    grant = dict.fromkeys(asks, 0)
    open_ = {role for role, ask in asks.items() if ask > 0}
    while open_:
        role = min(open_, key=lambda r: (grant[r] / asks[r], -asks[r], r))
        trial = one_more(grant, role, asks, bases, band)
        if trial is not None and fits(trial):
            grant = trial
        else:
            open_.discard(role)
        open_ -= {r for r in open_ if grant[r] >= asks[r]}
    return grant


def split_clause(asks: Mapping[str, int], grant: Mapping[str, int], band: RatioBand | None) -> str:
    asked = {r: a for r, a in sorted(asks.items()) if a > 0}
    each = ", ".join(f"{r} {grant[r]} of {a}" for r, a in asked.items())
    clause = (
        f"the free room holds {sum(grant.values())} of the {sum(asked.values())} new units the roles "
        f"ask for together ({each}), split in proportion to the asks"
    )
    if band is not None:
        clause += (
            f", keeping {band.numerator_role}:{band.denominator_role} within "
            f"{band.min_ratio:g}-{band.max_ratio:g}"
        )
    return clause


def share_room(
    decisions: Mapping[str, Decision], policies: RolePolicies, fits: Fits, now: float
) -> dict[str, Decision]:
    """The decisions with the roles' new units lowered to what the room holds together. The new
    units a role's `min_replicas` asks for are not lowered (as the core's placement cap never
    goes below it) but take their room first; the rest is split."""
    kept = {role: min(d.desired, d.current) for role, d in decisions.items()}
    forced = {
        role: max(min(d.desired, policies.roles[role].min_replicas) - kept[role], 0)
        for role, d in decisions.items()
    }
    bases = {role: kept[role] + forced[role] for role in decisions}
    asks = {role: d.desired - bases[role] for role, d in decisions.items()}

    def room(more: Mapping[str, int]) -> bool:
        return fits({role: forced[role] + more.get(role, 0) for role in decisions})

    result = dict(decisions)
    if not any(asks.values()) or room(asks):
        return result
    band = policies.ratio
    if band is not None and not (
        band.numerator_role in decisions
        and band.denominator_role in decisions
        and in_band(bases[band.numerator_role], bases[band.denominator_role], band)
        and in_band(decisions[band.numerator_role].desired, decisions[band.denominator_role].desired, band)
    ):
        band = None  # out of the band before or after: the split cannot keep what is not kept
    grant = fill(asks, bases, room, band)
    clause = split_clause(asks, grant, band)
    for role, ask in asks.items():
        if ask > 0:
            result[role] = amend(
                decisions[role], bases[role] + grant[role], clause, now, policies.roles[role]
            )
    return result


def autoscale_roles(
    policies: RolePolicies,
    signals: Mapping[str, Signals],
    now: float,
    history: Mapping[str, History],
    room: Fits | None = None,
) -> Mapping[str, Decision]:
    """`room`: whether the roles' new units fit together (None: not known, each role's own
    `placeable` is all that limits it)."""
    decisions = held(policies, signals, now, history)
    return share_room(decisions, policies, room, now) if room is not None else decisions


def held(
    policies: RolePolicies, signals: Mapping[str, Signals], now: float, history: Mapping[str, History]
) -> dict[str, Decision]:
    """Each role's decision, held through zero together and inside the band."""
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
