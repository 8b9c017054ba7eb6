"""Random role policies and signals against autoscale_roles' promises: each role within its bounds,
roles through zero together, and the ratio band kept or a warning that it cannot be."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.autoscale.roles import autoscale_roles, in_band
from phalanx.autoscale.types import MetricTarget, Policy, RatioBand, RolePolicies, Signals, UnitSignals
from tests.unit.autoscale.core_builders import CALM, FREE

RELAXED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def role_policy(draw: st.DrawFn, signal: str) -> Policy:
    low = draw(st.integers(0, 3))
    return Policy(
        min_replicas=low,
        max_replicas=draw(st.integers(max(low, 1), 12)),
        metrics=(
            MetricTarget("queue" if signal == "queue" else "kv_usage", 5.0 if signal == "queue" else 0.7),
        ),
        scale_up=FREE,
        scale_down=FREE,
        panic=CALM,
    )


@st.composite
def role_signals(draw: st.DrawFn, signal: str) -> Signals:
    count = draw(st.integers(0, 10))
    values = st.floats(0, 30 if signal == "queue" else 1.5, allow_nan=False)
    units = tuple(UnitSignals(f"u{i}", True, **{signal: draw(values)}) for i in range(count))
    return Signals(units=units, admission_queue=draw(st.sampled_from([0, 0, 4])) if signal == "queue" else 0)


bands = st.builds(
    RatioBand,
    numerator_role=st.just("prefill"),
    denominator_role=st.just("decode"),
    min_ratio=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
    max_ratio=st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0]),
).filter(lambda band: band.min_ratio <= band.max_ratio)


@RELAXED
@given(role_policy("queue"), role_policy("kv_usage"), role_signals("queue"), role_signals("kv_usage"), bands)
def test_roles_stay_in_bounds_go_through_zero_together_and_keep_the_band_or_say_why(
    prefill: Policy, decode: Policy, prefill_signals: Signals, decode_signals: Signals, band: RatioBand
) -> None:
    policies = RolePolicies(roles={"prefill": prefill, "decode": decode}, ratio=band)
    decisions = autoscale_roles(policies, {"prefill": prefill_signals, "decode": decode_signals}, 0.0, {})
    counts = {role: d.desired for role, d in decisions.items()}
    for role, decision in decisions.items():
        chosen = policies.roles[role]
        assert chosen.min_replicas <= decision.desired <= chosen.max_replicas
        assert decision.history.records[-1:] == () or decision.history.records[-1].desired == decision.desired
    assert (counts["prefill"] == 0) == (counts["decode"] == 0)
    warned = [e for d in decisions.values() for e in d.events if e.reason == "RatioOutOfBand"]
    assert in_band(counts["prefill"], counts["decode"], band) or warned
