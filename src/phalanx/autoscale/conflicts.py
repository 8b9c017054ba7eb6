"""Which AutoscalingPolicy owns a target when several name it (pure).

Two autoscalers on one replica count fight (each undoes the other's change), so only one may act:
the oldest policy (creationTimestamp, then name) among those whose targets overlap. A policy on a
whole ModelServing overlaps every policy on that ModelServing; policies on roles overlap when they
share a role. Every other policy is refused with a condition naming the owner, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from phalanx.api.autoscalingpolicy import CONDITION_CONFLICT, AutoscalingPolicy
from phalanx.api.base import Condition

REASON_REFUSED = "TargetOwnedByAnotherPolicy"


@dataclass(frozen=True)
class Claim:
    """What one policy scales: a ModelServing, whole (`roles` None) or some of its roles."""

    namespace: str
    name: str  # the policy's
    created: str  # creationTimestamp, RFC 3339; '' for a policy not yet created (the newest)
    serving: str
    roles: frozenset[str] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def overlaps(self, other: Claim) -> bool:
        if (self.namespace, self.serving) != (other.namespace, other.serving):
            return False
        if self.roles is None or other.roles is None:
            return True
        return bool(self.roles & other.roles)


@dataclass(frozen=True)
class Refusal:
    owner: tuple[str, str]  # namespace, name of the policy that owns the target
    condition: Condition


def claim_of(policy: AutoscalingPolicy) -> Claim | None:
    """The target `policy` scales; None when it names none (an invalid policy claims nothing)."""
    spec = policy.spec
    meta = policy.metadata
    created = meta.creation_timestamp or ""
    if spec.homogeneous_target is not None and spec.homogeneous_target.target.target_ref.name:
        return Claim(meta.namespace, meta.name, created, spec.homogeneous_target.target.target_ref.name)
    target = spec.disaggregated_target
    if target is not None and target.target_ref.name:
        return Claim(meta.namespace, meta.name, created, target.target_ref.name, frozenset(target.roles))
    return None


def _age(claim: Claim) -> tuple[bool, str, str]:
    # Not yet created (no timestamp) is the newest; RFC 3339 UTC timestamps sort as text.
    return (claim.created == "", claim.created, claim.name)


def resolve(claims: Iterable[Claim]) -> Mapping[tuple[str, str], Refusal | None]:
    """For every claim, None when its policy owns its target, else the refusal naming the owner:
    the oldest already-granted policy it overlaps."""
    granted: list[Claim] = []
    out: dict[tuple[str, str], Refusal | None] = {}
    for claim in sorted(claims, key=_age):
        owner = next((g for g in granted if g.overlaps(claim)), None)
        if owner is None:
            granted.append(claim)
            out[claim.key] = None
            continue
        out[claim.key] = Refusal(owner=owner.key, condition=refused_condition(claim, owner))
    return out


def _what(claim: Claim) -> str:
    if claim.roles is None:
        return f"ModelServing {claim.serving}"
    return f"roles {', '.join(sorted(claim.roles))} of ModelServing {claim.serving}"


def refused_condition(claim: Claim, owner: Claim) -> Condition:
    shared = claim.roles & owner.roles if claim.roles is not None and owner.roles is not None else None
    what = _what(claim) if shared is None else _what(Claim("", "", "", claim.serving, shared))
    return Condition(
        type=CONDITION_CONFLICT,
        status="True",
        reason=REASON_REFUSED,
        message=(
            f"{what} is already scaled by AutoscalingPolicy {owner.name} (the older policy); this policy "
            f"changes nothing. Delete one of the two, or point this one at another target."
        ),
    )
