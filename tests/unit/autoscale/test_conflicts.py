"""One autoscaler per target: the oldest policy owns it, the others are refused naming the owner."""

from __future__ import annotations

from typing import Any

from phalanx.api.autoscalingpolicy import CONDITION_CONFLICT, AutoscalingPolicy
from phalanx.autoscale.conflicts import REASON_REFUSED, Claim, claim_of, resolve

T0 = "2026-12-01T10:00:00Z"
T1 = "2026-12-01T11:00:00Z"
T2 = "2026-12-02T09:00:00Z"


def whole(name: str, created: str, serving: str = "chat", namespace: str = "default") -> Claim:
    return Claim(namespace, name, created, serving)


def roles(name: str, created: str, *names: str, serving: str = "pd") -> Claim:
    return Claim("default", name, created, serving, frozenset(names))


def owners(*claims: Claim) -> dict[str, str | None]:
    return {key[1]: (r.owner[1] if r else None) for key, r in resolve(claims).items()}


def test_one_policy_owns_its_target() -> None:
    assert owners(whole("a", T0)) == {"a": None}


def test_the_oldest_owns_whatever_the_order_given() -> None:
    assert owners(whole("late", T2), whole("first", T0), whole("mid", T1)) == {
        "first": None,
        "mid": "first",
        "late": "first",
    }


def test_same_time_then_name() -> None:
    assert owners(whole("b", T0), whole("a", T0)) == {"a": None, "b": "a"}


def test_a_policy_not_yet_created_is_the_newest() -> None:
    assert owners(whole("new", ""), whole("old", T2)) == {"old": None, "new": "old"}


def test_other_servings_and_namespaces_do_not_conflict() -> None:
    assert owners(whole("a", T0), whole("b", T1, serving="other"), whole("c", T1, namespace="team")) == {
        "a": None,
        "b": None,
        "c": None,
    }


def test_roles_conflict_only_when_shared() -> None:
    assert owners(roles("p", T0, "prefill"), roles("d", T1, "decode")) == {"p": None, "d": None}
    assert owners(roles("pd", T0, "prefill", "decode"), roles("d", T1, "decode")) == {"pd": None, "d": "pd"}


def test_a_whole_serving_policy_overlaps_every_role_policy() -> None:
    assert owners(roles("p", T0, "prefill", serving="chat"), whole("all", T1)) == {"p": None, "all": "p"}
    assert owners(whole("all", T0), roles("p", T1, "prefill", serving="chat")) == {"all": None, "p": "all"}


def test_a_refused_claim_blocks_nothing() -> None:
    # b loses to a on decode; c shares only prefill with b, so c owns prefill.
    result = owners(roles("a", T0, "decode"), roles("b", T1, "prefill", "decode"), roles("c", T2, "prefill"))
    assert result == {"a": None, "b": "a", "c": None}


def test_the_condition_names_the_owner_and_what_is_shared() -> None:
    result = resolve([roles("a", T0, "decode"), roles("b", T1, "prefill", "decode")])
    refusal = result[("default", "b")]
    assert refusal is not None
    condition = refusal.condition
    assert (condition.type, condition.status, condition.reason) == (
        CONDITION_CONFLICT,
        "True",
        REASON_REFUSED,
    )
    assert "roles decode of ModelServing pd is already scaled by AutoscalingPolicy a" in condition.message
    assert "changes nothing" in condition.message
    whole_refusal = resolve([whole("a", T0), whole("b", T1)])[("default", "b")]
    assert whole_refusal is not None
    assert whole_refusal.condition.message.startswith(
        "ModelServing chat is already scaled by AutoscalingPolicy a"
    )


def _policy(spec: dict[str, Any], created: str | None = T0) -> AutoscalingPolicy:
    return AutoscalingPolicy.model_validate(
        {"metadata": {"name": "p", "namespace": "ns", "creationTimestamp": created}, "spec": spec}
    )


def test_claim_of_a_policy() -> None:
    homogeneous = _policy(
        {"homogeneousTarget": {"minReplicas": 1, "maxReplicas": 2, "target": {"targetRef": {"name": "m"}}}}
    )
    assert claim_of(homogeneous) == Claim("ns", "p", T0, "m", None)
    disaggregated = _policy(
        {
            "disaggregatedTarget": {
                "targetRef": {"name": "m"},
                "roles": {
                    "prefill": {"minReplicas": 1, "maxReplicas": 2},
                    "decode": {"minReplicas": 1, "maxReplicas": 2},
                },
            }
        },
        created=None,
    )
    assert claim_of(disaggregated) == Claim("ns", "p", "", "m", frozenset({"prefill", "decode"}))
    assert claim_of(_policy({})) is None
    assert claim_of(_policy({"homogeneousTarget": {"minReplicas": 1, "maxReplicas": 2}})) is None
