"""One pass of one policy once its pages are read (pure), the same under `phalanx up` and in the
operator: each role's (or the ModelServing's) `Signals`, the core's decisions from the history
kept in memory or rebuilt from the status, the status to write and what to do with each
decision (`autoscale.act`). The shells only read pages and carry out the result."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from phalanx.api.autoscalingpolicy import AutoscalingPolicyStatus
from phalanx.autoscale.act import Act, act
from phalanx.autoscale.core import autoscale
from phalanx.autoscale.from_api import (
    disaggregated_status,
    history_from_status,
    role_histories,
    status_from_decision,
)
from phalanx.autoscale.observe.assemble import UnitState, build_signals
from phalanx.autoscale.observe.engine import UnitFields
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.placement import Fits
from phalanx.autoscale.roles import autoscale_roles
from phalanx.autoscale.types import History, Policy, RolePolicies, Signals

Role = str | None  # None: the whole ModelServing


def role_signals(
    units: Mapping[Role, Sequence[UnitState]],
    engines: Mapping[str, UnitFields],
    router: RouterFigures | None,
    placeable: Mapping[Role, int | None],
) -> dict[Role, Signals]:
    """Each role's signals: its own units, the router's in-flight counts of its units only, what
    can still be placed for it, and the router's arrival rate (the demand of the whole target)."""
    signals: dict[Role, Signals] = {}
    for role, found in units.items():
        names = {u.name for u in found}
        mine = (
            replace(router, inflight={k: v for k, v in router.inflight.items() if k in names})
            if router
            else None
        )
        one = build_signals(found, engines, mine, placeable=placeable.get(role))
        if router is not None and router.arrivals_per_second is not None:
            one = replace(one, demand_requests_per_second=router.arrivals_per_second)
        signals[role] = one
    return signals


@dataclass(frozen=True)
class PolicyPass:
    status: AutoscalingPolicyStatus  # with the decisions; the conditions are the caller's
    reasons: list[str]  # for the Ready condition
    acts: list[tuple[Role, Act]]  # by role name
    history: History | None  # to keep for the next pass (a policy on a whole ModelServing)
    roles: dict[str, History] | None  # the same, per role


def decide(
    name: str,
    policy: Policy | RolePolicies,
    signals: Mapping[Role, Signals],
    now: float,
    status: AutoscalingPolicyStatus | None,
    kept: History | Mapping[str, History] | None,
    replicas: Callable[[Role], int],
    room: Fits | None = None,
) -> PolicyPass:
    """The pass of policy `name`: `kept` is the history from the last pass (None: rebuild it from
    `status`), `replicas(role)` the count the spec holds now (role None: spec.replicas), `room`
    whether the roles' new units fit together (None: not known; each role's `placeable` alone)."""
    status = status or AutoscalingPolicyStatus()
    if isinstance(policy, Policy):
        before = status.homogeneous_status
        history = kept if isinstance(kept, History) else history_from_status(before)
        decision = autoscale(policy, signals.get(None, Signals(units=())), now, history)
        reported = before.desired_replicas if before is not None else None
        one = act(name, decision, replicas(None), policy.observe_only, None, reported)
        return PolicyPass(
            status.model_copy(update={"homogeneous_status": status_from_decision(decision)}),
            [decision.reason],
            [(None, one)],
            decision.history,
            None,
        )
    earlier = status.disaggregated_status
    histories = kept if isinstance(kept, Mapping) else role_histories(earlier)
    by_role = {role: s for role, s in signals.items() if role is not None}
    decisions = autoscale_roles(policy, by_role, now, histories, room)
    said = {r.name: r.desired_replicas for r in earlier.roles} if earlier is not None else {}
    acts: list[tuple[Role, Act]] = [
        (role, act(name, d, replicas(role), policy.roles[role].observe_only, role, said.get(role)))
        for role, d in sorted(decisions.items())
    ]
    return PolicyPass(
        status.model_copy(update={"disaggregated_status": disaggregated_status(decisions, policy.ratio)}),
        [f"{role}: {decisions[role].reason}" for role in sorted(decisions)],
        acts,
        None,
        {role: d.history for role, d in decisions.items()},
    )
