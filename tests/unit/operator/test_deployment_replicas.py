"""The counts a ModelDeployment's apply sends: the plan's until an autoscaler owns them."""

from __future__ import annotations

from typing import Any

from phalanx.controller.deployment_replicas import autoscaled, counts_to_send, replicas_owners

OURS = "phalanx"


def serving(replicas: int | None = 2, roles: dict[str, int] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {"roles": [{"name": n, "replicas": r} for n, r in (roles or {}).items()]}
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelServing",
        "metadata": {},
        "spec": spec,
    }


def entry(manager: str, operation: str, fields: dict[str, Any], subresource: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"manager": manager, "operation": operation, "fieldsType": "FieldsV1"}
    out["fieldsV1"] = fields
    if subresource:
        out["subresource"] = subresource
    return out


REPLICAS: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
LABELS = {"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {"f:template": {}}}


def stored(replicas: int, *entries: dict[str, Any], roles: dict[str, int] | None = None) -> dict[str, Any]:
    out = serving(replicas, roles)
    out["metadata"]["managedFields"] = list(entries)
    return out


def test_owners_are_the_entries_that_hold_spec_replicas() -> None:
    found = stored(
        4,
        entry(OURS, "Apply", LABELS),
        entry("kube-controller-manager", "Update", REPLICAS, "scale"),
        entry("ops", "Update", {"f:status": {"f:replicas": {}}}, "status"),
    )
    assert replicas_owners(found) == [("kube-controller-manager", "Update", "scale")]
    assert replicas_owners(None) == []
    assert replicas_owners({"metadata": {}}) == []


def test_autoscaled_by_the_deployments_autoscaling_a_policy_or_a_scale_subresource_write() -> None:
    plain = stored(2, entry(OURS, "Apply", REPLICAS))
    assert autoscaled(True, [], "demo", plain)
    assert autoscaled(False, ["other", "demo"], "demo", plain)
    assert not autoscaled(False, ["other"], "demo", plain)
    assert not autoscaled(False, [], "demo", None)
    hpa = stored(5, entry("kube-controller-manager", "Update", REPLICAS, "scale"))
    assert autoscaled(False, [], "demo", hpa)
    # A merge patch of the object itself (not the scale subresource) is not an autoscaler by itself.
    assert not autoscaled(False, [], "demo", stored(5, entry("kubectl-edit", "Update", REPLICAS)))


def test_creation_sends_the_plans_count_even_when_autoscaled() -> None:
    assert counts_to_send(serving(3), None, autoscaled=True, manager=OURS)["spec"]["replicas"] == 3


def test_without_an_autoscaler_the_plans_count_wins_over_the_stored_one() -> None:
    found = stored(5, entry("kubectl", "Update", REPLICAS))
    assert counts_to_send(serving(3), found, autoscaled=False, manager=OURS)["spec"]["replicas"] == 3


def test_autoscaled_and_owned_by_another_manager_the_count_is_left_out() -> None:
    for other in (
        entry(OURS, "Update", REPLICAS),  # the operator's autoscaler: a merge patch, not our apply
        entry("kube-controller-manager", "Update", REPLICAS, "scale"),
    ):
        sent = counts_to_send(serving(1), stored(6, other), autoscaled=True, manager=OURS)
        assert "replicas" not in sent["spec"]


def test_autoscaled_and_owned_only_by_this_apply_the_stored_count_is_sent_back() -> None:
    # Left out, the field would lose its only owner and fall back to the CRD's default.
    for found in (stored(4, entry(OURS, "Apply", REPLICAS)), stored(4)):
        assert counts_to_send(serving(1), found, autoscaled=True, manager=OURS)["spec"]["replicas"] == 4


def test_the_scaled_roles_keep_their_stored_counts_and_the_others_follow_the_plan() -> None:
    found = stored(1, entry(OURS, "Update", REPLICAS), roles={"prefill": 3, "decode": 5})
    compiled = serving(1, {"prefill": 1, "decode": 2, "proxy": 1})
    sent = counts_to_send(compiled, found, autoscaled=True, manager=OURS, scaled_roles={"decode", "proxy"})
    assert sent["spec"]["template"]["roles"] == [
        {"name": "prefill", "replicas": 1},
        {"name": "decode", "replicas": 5},
        {"name": "proxy", "replicas": 1},  # not stored yet: the plan's
    ]


def test_the_compiled_serving_is_not_changed_in_place() -> None:
    compiled = serving(1, {"decode": 2})
    counts_to_send(
        compiled, stored(4, roles={"decode": 7}), autoscaled=True, manager=OURS, scaled_roles={"decode"}
    )
    assert compiled == serving(1, {"decode": 2})
