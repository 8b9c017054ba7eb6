"""`autoscale`: one pass of the autoscaler for one target, a pure function.

recommend each signal -> a backlog asks for what drains it -> highest wins -> clamp -> (from zero:
start at once) | panic | windows and step limits -> no small scale-up right after one -> clamp ->
to zero only after a whole idle window -> placement cap -> record.
"""

from __future__ import annotations

import math
from dataclasses import replace

from phalanx.autoscale.backlog import (
    Need,
    backlog_requests,
    keep_demand,
    lead_time,
    learn_startup,
    need,
    rise,
    seen_arrivals,
)
from phalanx.autoscale.capacity import batch_rate, capacity_figure, keep_saturated, learn_capacity
from phalanx.autoscale.placement import blocked_clause, blocked_events, placement
from phalanx.autoscale.recommend import Figure, number, plural, recommend
from phalanx.autoscale.record import append_record, prune_recommendations
from phalanx.autoscale.stabilize import Step, follow_up, panic_step, seconds, stable_step
from phalanx.autoscale.types import (
    Decision,
    DecisionRecord,
    History,
    Mode,
    Policy,
    Recommendation,
    SignalName,
    Signals,
    UnitSignals,
)
from phalanx.autoscale.zero import idle_for

# Figures that read a backlog as a lack of units: the queue-like signals through the ratio rule,
# and the latency guards, whose p95 over the last minute still holds a backlog's waits after the
# backlog is gone.
BACKLOG_SIGNALS: frozenset[SignalName] = frozenset({"queue", "inflight", "waiting", "ttft_p95", "itl_p95"})


def clamp(value: int, policy: Policy) -> tuple[int, str | None]:
    if value < policy.min_replicas:
        return policy.min_replicas, f"raised to the minimum {policy.min_replicas}"
    if value > policy.max_replicas:
        return policy.max_replicas, f"capped at the maximum {policy.max_replicas}"
    return value, None


def drain_cap(figure: Figure, current: int, needed: Need | None, unit: str) -> Figure:
    """A queue-like signal read through the ratio rule counts a backlog as steady load, a latency
    guard counts its wait; above the current count either asks for no more than the demand and
    the backlog's drain need (when both are known; otherwise the figure stands)."""
    if needed is None or figure.source not in BACKLOG_SIGNALS or figure.replicas <= current:
        return figure
    cap = max(current, needed.units)
    if figure.replicas <= cap:
        return figure
    return Figure(figure.source, cap, f"{figure.text}, but {needed.text(unit)}", figure.raise_only)


def gather(
    policy: Policy,
    live: tuple[UnitSignals, ...],
    signals: Signals,
    capacity: float | None,
    starting: tuple[float, ...] = (),
    lead: float = 0.0,
    ahead: float = 0.0,
    which: str = "learned",
) -> tuple[list[Figure], list[int]]:
    """Every figure of this pass: the metric targets', the capacity floor's, the admission queue's;
    and what the windows keep of each (see `remembered`). `starting`: seconds until each unit now
    starting is ready; `lead`: until one asked for now is."""
    raw = recommend(policy.metrics, live, signals, policy.tolerance, policy.unit)
    utilization = policy.capacity_utilization
    needed = need(live, signals, capacity, utilization, policy.backlog_horizon, starting, lead, ahead)
    figures = [drain_cap(f, len(live), needed, policy.unit) for f in raw]
    kept = remembered(raw, figures, needed)
    if policy.capacity_floor:
        demand, requests = signals.demand_tokens_per_second, signals.demand_requests_per_second
        # A rising demand is planned for as it will be when a unit asked for now is ready.
        expected = demand * (requests + ahead) / requests if demand is not None and requests else None
        floor = capacity_figure(
            demand, capacity, len(live), policy.tolerance, policy.unit, utilization, expected, which
        )
        figures += [floor] if floor is not None else []
        kept += [floor.replicas] if floor is not None else []
    if not live and signals.admission_queue > 0:
        waiting = plural(signals.admission_queue, "request")
        text = f"{waiting} wait in the admission queue with no {policy.unit} to serve them"
        figures.append(Figure("admission-queue", 1, text))
        kept.append(1)
    return figures, kept


def remembered(raw: list[Figure], capped: list[Figure], needed: Need | None) -> list[int]:
    """What the windows keep of each figure: one the backlog's drain need capped counts at what
    the demand alone needs. A backlog is drained once; kept for a whole scale-down window, its
    drain units would stay that long after it is gone."""
    if needed is None:
        return [f.replicas for f in capped]
    steady = math.ceil(needed.steady - 1e-9)
    return [c.replicas if c is f else min(c.replicas, steady) for f, c in zip(raw, capped, strict=True)]


def planned_capacity(
    policy: Policy, live: tuple[UnitSignals, ...], signals: Signals, learned: float | None
) -> tuple[float | None, str]:
    """The capacity per unit the floor and the backlog cap plan with, and where it comes from:
    the one learned from saturated units, else the batch's estimate (no saturation needed), else
    the policy's prior."""
    if learned is not None:
        return learned, "learned"
    tokens, requests = signals.demand_tokens_per_second, signals.demand_requests_per_second
    if tokens and requests:
        batch = batch_rate(live, signals.max_running, tokens / requests)
        if batch is not None:
            return batch, "batch-estimated"
    return policy.capacity_prior, "expected (the policy's prior)"


def unlagged(
    signals: Signals,
    history: History,
    live: tuple[UnitSignals, ...],
    now: float,
    capacity: float | None,
    ahead: float,
) -> tuple[Signals, float, str | None]:
    """The signals with the arrival rate the backlog's growth shows, when every ready unit is
    saturated and that rate is above the router's rate plus its forecast rise (the rise is then
    in the rate: none is added), and the clause that says so; else the signals as they are."""
    tokens, requests = signals.demand_tokens_per_second, signals.demand_requests_per_second
    if tokens is None or requests is None or requests <= 0 or capacity is None or capacity <= 0:
        return signals, ahead, None
    per_unit = capacity * requests / tokens
    backlog = backlog_requests(live, signals)
    seen = seen_arrivals(history.backlog, backlog, live, now, requests, per_unit)
    if seen is None or seen <= requests + ahead:
        return signals, ahead, None
    assert history.backlog is not None  # seen_arrivals needs it
    then, before = history.backlog
    clause = (
        f"the backlog grew from {number(before)} to {number(backlog)} requests in "
        f"{seconds(now - then)} with every ready unit saturated: requests arrive at "
        f"{number(seen)}/s, not the {number(requests)}/s of the router's rate window"
    )
    faster = replace(
        signals, demand_requests_per_second=seen, demand_tokens_per_second=tokens * seen / requests
    )
    return faster, 0.0, clause


def move(
    policy: Policy,
    recommended: int,
    current: int,
    now: float,
    recommendations: tuple[Recommendation, ...],
    history: History,
) -> tuple[Step, float | None]:
    """The count panic mode or the stable windows and limits allow, and when panic ends."""
    panic_until = history.panic_until
    threshold = recommended * 100 >= current * policy.panic.threshold_percent
    if current > 0 and policy.panic.hold > 0 and threshold:
        panic_until = now + policy.panic.hold
    if panic_until is not None and now <= panic_until:
        step = panic_step(recommended, current, now, history.records, policy.panic, policy.unit)
        why = (
            f"panic mode for {seconds(policy.panic.hold)}: {recommended} is at least "
            f"{policy.panic.threshold_percent:g}% of {current}"
            if threshold
            else f"panic mode for {seconds(panic_until - now)} more"
        )
        return Step(step.desired, (why, *step.clauses)), panic_until
    if recommended == current:
        return Step(current), None
    limit = policy.scale_up if recommended > current else policy.scale_down
    step = stable_step(recommended, current, now, recommendations, history.records, limit, policy.unit)
    return follow_up(step, current, now, history.last_scale_up, policy.unit), None


def autoscale(policy: Policy, signals: Signals, now: float, history: History) -> Decision:
    unit = policy.unit
    live = tuple(u for u in signals.units if not u.draining)  # draining units are already leaving
    current = len(live)
    saturated = keep_saturated(history.saturated, live, now)
    capacity = learn_capacity(history.capacity_per_unit, live, saturated, now)
    startup = learn_startup(history.startup, history.starting, live, now)
    arrivals = signals.demand_requests_per_second
    lead = lead_time(startup, live, now, signals.startup_seconds)
    ahead = rise(history.demand, now, arrivals, lead) if arrivals is not None else 0.0
    planned, which = planned_capacity(policy, live, signals, capacity)
    seen, ahead, growth = unlagged(signals, history, live, now, planned, ahead)
    starting = tuple(
        max(0.0, lead - (now - u.pending_since)) for u in live if not u.ready and u.pending_since is not None
    )
    figures, kept_values = gather(policy, live, seen, planned, starting, lead, ahead, which)

    top = max(figures, key=lambda f: f.replicas) if figures else None
    clauses = [top.text if top is not None else f"no signal has data, keeping {plural(current, unit)}"]
    clauses += [growth] if growth is not None and top is not None else []
    wanted = top.replicas if top is not None else current
    if figures and all(f.raise_only for f in figures) and wanted < current:
        # Guards and a short queue can raise the count; with nothing that measures load, keep it.
        wanted = current
        clauses.append(f"nothing measures how busy the {unit}s are, keeping {plural(current, unit)}")
    recommended, clamped = clamp(wanted, policy)
    clauses += [clamped] if clamped else []
    longest = max(policy.scale_up.stabilization_window, policy.scale_down.stabilization_window)
    recommendations = prune_recommendations(
        (*history.recommendations, Recommendation(now, recommended)), now, longest
    )
    # A drain's units are asked for now but not kept by the windows (see `remembered`).
    drained = kept_values != [f.replicas for f in figures]
    windowed = min(recommended, clamp(max(kept_values), policy)[0]) if drained else recommended

    if current == 0 and signals.admission_queue > 0:
        step, panic_until = (
            Step(recommended, (f"started at once: no window or limit holds back the first {unit}",)),
            None,
        )
    else:
        step, panic_until = move(policy, recommended, current, now, recommendations, history)
    mode: Mode = "Stable" if panic_until is None else "Panic"
    clauses += step.clauses
    if step.desired < current and ahead > 0:
        # A unit removed now would have to be started again before the rise arrives.
        step = Step(current)
        clauses.append(
            f"kept at {current}: the arrival rate is rising (+{number(ahead)} requests/s within "
            f"{seconds(lead)}), no scale-down"
        )
    desired, clamped = clamp(step.desired, policy)
    clauses += [clamped] if clamped else []
    window = policy.scale_down.stabilization_window
    if (
        desired == 0
        and current > 0
        and policy.max_replicas > 0
        and not idle_for(recommendations, now, window)
    ):
        desired = 1
        clauses.append(
            f"kept at 1: the load has not been 0 for the whole {seconds(window)} scale-down window"
        )

    where = placement(live, signals, now, history, policy.pending_timeout)
    before = desired
    if where.cap is not None and desired > max(where.cap, policy.min_replicas):
        desired = max(where.cap, policy.min_replicas)
        clauses.append(blocked_clause(where, desired, unit))
    events = blocked_events(where, before, desired, policy.pending_timeout, unit) if where.stuck else ()

    reason = "; ".join(clauses) + (" (observe only: not applied)." if policy.observe_only else ".")
    record = DecisionRecord(now, current, desired, mode, reason)
    kept = History(
        recommendations=(*recommendations[:-1], Recommendation(now, windowed)),
        records=append_record(history.records, record, policy.history_limit),
        panic_until=panic_until,
        last_scale_up=now if desired > current else history.last_scale_up,
        last_scale_down=now if desired < current else history.last_scale_down,
        capacity_per_unit=capacity,
        placement_limit=where.limit,
        placement_retry_at=where.retry_at,
        starting=tuple(
            (u.name, u.pending_since) for u in live if not u.ready and u.pending_since is not None
        ),
        startup=startup,
        demand=keep_demand(history.demand, now, arrivals),
        saturated=saturated,
        backlog=(now, backlog_requests(live, signals)),
    )
    return Decision(
        desired=desired,
        current=current,
        ready=sum(1 for u in live if u.ready),
        mode=mode,
        reason=reason,
        history=kept,
        recommendations={f.source: f.replicas for f in figures},
        events=events,
    )
