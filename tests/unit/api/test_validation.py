"""One failing spec per validation rule: each names the field path, says why and how to fix it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phalanx.api import FieldError, parse_resource

Spec = dict[str, Any]
ROLE = ["spec", "template", "roles", 0]


def problems(data: Spec) -> list[FieldError]:
    return parse_resource(data)[1]


def only(data: Spec, severity: str = "error") -> FieldError:
    found = [p for p in problems(data) if p.severity == severity]
    assert len(found) == 1, [p.render() for p in found]
    return found[0]


def put(data: Spec, path: list[Any], value: Any) -> Spec:
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


def test_minimal_spec_is_valid(serving: Callable[[], Spec]) -> None:
    assert problems(serving()) == []


@pytest.mark.parametrize(
    ("path", "value", "field", "message", "fix"),
    [
        # Kthena webhook rules (reference notes section 1.2), one by one.
        (["metadata", "name"], "x" * 60, "spec.template.roles[0].name", "makes pod names too long", "within"),
        ([*ROLE, "name"], "Decode_1", "spec.template.roles[0].name", "DNS-1123 label", "use a name like"),
        (
            [*ROLE, "entryTemplate", "spec", "containers", 0, "image"],
            "vllm openai",
            "spec.template.roles[0].entryTemplate.spec.containers[0].image",
            "must not contain spaces",
            "remove the spaces",
        ),
        (["spec", "replicas"], -1, "spec.replicas", "must be at least 0", "at least 0"),
        ([*ROLE, "replicas"], -2, "spec.template.roles[0].replicas", "must be at least 0", "at least 0"),
        (["spec", "template", "roles"], [], "spec.template.roles", "needs at least 1 item", "add an item"),
        (
            ["spec", "rolloutStrategy"],
            {"rollingUpdateConfiguration": {"maxUnavailable": "150%"}},
            "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable",
            "must not be more than 100%",
            "between 0% and 100%",
        ),
        (
            ["spec", "rolloutStrategy"],
            {"rollingUpdateConfiguration": {"partition": "half"}},
            "spec.rolloutStrategy.rollingUpdateConfiguration.partition",
            "is not a number or a percentage",
            "'25%'",
        ),
        (
            ["spec", "rolloutStrategy"],
            {"rollingUpdateConfiguration": {"maxUnavailable": "10%"}},
            "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable",
            "resolves to 0 with 2 replicas while maxSurge is also 0",
            "maxSurge to at least 1",
        ),
        (
            ["spec", "template", "gangPolicy"],
            {"minRoleReplicas": {"prefill": 1}},
            "spec.template.gangPolicy.minRoleReplicas.prefill",
            "is not the name of a role",
            "decode",
        ),
        (
            ["spec", "template", "gangPolicy"],
            {"minRoleReplicas": {"decode": 3}},
            "spec.template.gangPolicy.minRoleReplicas.decode",
            "is more than role 'decode' has replicas (2)",
            "between 0 and 2",
        ),
        (
            ["spec", "template", "gangPolicy"],
            {"minRoleReplicas": {"decode": -1}},
            "spec.template.gangPolicy.minRoleReplicas.decode",
            "must not be negative",
            "0 or more",
        ),
        (
            [*ROLE, "workerReplicas"],
            -1,
            "spec.template.roles[0].workerReplicas",
            "must be at least 0",
            "at least 0",
        ),
        (
            [*ROLE, "workerTemplate"],
            None,
            "spec.template.roles[0].workerTemplate",
            "is required when workerReplicas is 1",
            "set workerReplicas: 0",
        ),
        (
            ["spec", "recoveryPolicy"],
            "ServingGroupRecreate",
            "spec.recoveryPolicy",
            "cannot be combined with rolloutStrategy.type RoleRollingUpdate",
            "recoveryPolicy: RoleRecreate",
        ),
        # Beyond Kthena.
        (["metadata", "name"], "1demo", "metadata.name", "DNS-1035 label", "llama-70b"),
        (["spec", "recoveryPolicy"], "Sometimes", "spec.recoveryPolicy", "must be one of", "RoleRecreate"),
        (
            ["spec", "rolloutStrategy"],
            {"rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 0}},
            "spec.rolloutStrategy.rollingUpdateConfiguration.maxUnavailable",
            "while maxSurge is also 0",
            "maxSurge to at least 1",
        ),
        (
            ["spec", "template", "networkTopology"],
            {"groupPolicy": {"mode": "hard", "highestTierAllowed": 1, "highestTierName": "rack"}},
            "spec.template.networkTopology.groupPolicy.highestTierName",
            "cannot be set together with highestTierAllowed",
            "keep only one",
        ),
        (
            [*ROLE, "entryTemplate", "spec", "containers", 0, "resources"],
            {"requests": {"cpu": "4"}, "limits": {"cpu": "2"}},
            "spec.template.roles[0].entryTemplate.spec.containers[0].resources.requests.cpu",
            "is more than its limit",
            "lower the request",
        ),
        (
            [*ROLE, "entryTemplate", "spec", "containers", 0, "resources"],
            {"requests": {"nvidia.com/gpu": "4"}, "limits": {"nvidia.com/gpu": "8"}},
            "spec.template.roles[0].entryTemplate.spec.containers[0].resources.requests['nvidia.com/gpu']",
            "must equal its limit",
            "same value",
        ),
        (
            [*ROLE, "entryTemplate", "spec", "containers", 0, "resources"],
            {"limits": {"memory": "lots"}},
            "spec.template.roles[0].entryTemplate.spec.containers[0].resources.limits.memory",
            "is not a quantity",
            "'64Gi'",
        ),
        (
            [*ROLE, "entryTemplate", "spec", "containers", 0, "image"],
            None,
            "spec.template.roles[0].entryTemplate.spec.containers[0].image",
            "is required",
            "add the container image",
        ),
        (
            [*ROLE, "entryTemplate", "spec", "containers", 0, "ports"],
            [{"containerPort": "http"}],
            "spec.template.roles[0].entryTemplate.spec.containers[0].ports[0].containerPort",
            "must be a whole number",
            "write a whole number",
        ),
        (
            [*ROLE, "entryTemplate", "spec", "containers"],
            None,
            "spec.template.roles[0].entryTemplate.spec.containers",
            "must be a list",
            "",
        ),
        (
            [*ROLE, "entryTemplate", "metadata"],
            {"labels": {"bad key!": "x"}},
            "spec.template.roles[0].entryTemplate.metadata.labels['bad key!']",
            "is not a valid label key",
            "example.com/tier",
        ),
        (
            ["spec", "template", "roles", 0, "entryTemplate"],
            {"spec": {"containers": []}, "extra": 1},
            "spec.template.roles[0].entryTemplate.extra",
            "unknown field 'extra'",
            "allowed: metadata, spec",
        ),
    ],
    ids=lambda v: (
        v
        if (isinstance(v, str) and v.startswith("spec")) or (isinstance(v, str) and v.startswith("metadata"))
        else None
    ),
)
def test_rule(
    serving: Callable[[], Spec], path: list[Any], value: Any, field: str, message: str, fix: str
) -> None:
    data = serving()
    if path[-1] == "recoveryPolicy" and value == "ServingGroupRecreate":
        data["spec"]["rolloutStrategy"] = {"type": "RoleRollingUpdate"}
    if value is None and path[-1] == "workerTemplate":
        del data["spec"]["template"]["roles"][0]["workerTemplate"]
    else:
        put(data, path, value)
    found = [p for p in problems(data) if p.severity == "error" and p.field == field]
    assert found, [p.render() for p in problems(data)]
    assert message in found[0].message
    assert fix in found[0].fix


def test_long_names_say_which_name_and_how_long(serving: Callable[[], Spec]) -> None:
    data = put(serving(), ["metadata", "name"], "a" * 51)
    error = only(data)
    # The longest pod this spec produces: group 1, role instance 1, worker 1.
    longest = "a" * 51 + "-1-decode-1-1"
    assert f"'{longest}' is {len(longest)} characters, at most 63" in error.message
    assert "(now 51 + 6)" in error.fix


def test_surge_groups_count_towards_name_length(serving: Callable[[], Spec]) -> None:
    data = put(serving(), ["metadata", "name"], "a" * 50)  # 50 + len("-1-decode-1-1") == 63
    assert problems(data) == []
    data["spec"]["replicas"] = 10  # group ordinals 0..9: still one digit
    assert problems(data) == []
    data["spec"]["rolloutStrategy"] = {"rollingUpdateConfiguration": {"maxSurge": 1}}  # surge group 10
    assert "is 64 characters" in only(data).message


def test_role_max_unavailable_bounds(serving: Callable[[], Spec]) -> None:
    data = serving()
    data["spec"]["rolloutStrategy"] = {"type": "RoleRollingUpdate"}
    data["spec"]["template"]["roles"][0]["maxUnavailable"] = 3
    assert only(data).message == "is more than the role's replicas (2)"
    data["spec"]["template"]["roles"][0]["maxUnavailable"] = "10%"
    assert "resolves to 0 with 2 role replicas" in only(data).message


def test_duplicate_role_names(serving: Callable[[], Spec]) -> None:
    data = serving()
    data["spec"]["template"]["roles"].append(data["spec"]["template"]["roles"][0])
    error = only(data)
    assert (error.field, error.message) == ("spec.template.roles[1].name", "duplicates the name of roles[0]")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda d: d["spec"]["template"]["roles"][0].update(workerReplicas=0),
            "spec.template.roles[0].workerTemplate",
            "is ignored",
        ),
        (
            lambda d: d["spec"].update(rolloutStrategy={"rollingUpdateConfiguration": {"partition": 5}}),
            "spec.rolloutStrategy.rollingUpdateConfiguration.partition",
            "no ServingGroup will be updated",
        ),
        (
            lambda d: (
                d["spec"].update(schedulerName="default-scheduler")
                or d["spec"]["template"].update(gangPolicy={"minRoleReplicas": {"decode": 1}})
            ),
            "spec.template.gangPolicy.minRoleReplicas",
            "is not enforced",
        ),
        (
            lambda d: d["spec"]["template"].update(
                networkTopology={"groupPolicy": {"mode": "soft", "highestTierAllowed": 2}}
            ),
            "spec.template.networkTopology.groupPolicy.highestTierAllowed",
            "is ignored in soft mode",
        ),
        (
            lambda d: d["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0].update(
                env=[{"name": "ENTRY_ADDRESS", "value": "x"}]
            ),
            "spec.template.roles[0].entryTemplate.spec.containers[0].env[0].name",
            "is injected by Phalanx",
        ),
        (
            lambda d: d["spec"]["template"]["roles"][0]["entryTemplate"].update(
                metadata={"labels": {"serving.phalanx.dev/role": "x"}}
            ),
            "spec.template.roles[0].entryTemplate.metadata.labels['serving.phalanx.dev/role']",
            "is set by Phalanx",
        ),
        (
            lambda d: d["spec"]["template"]["roles"][0]["entryTemplate"]["spec"].update(
                schedulerName="other"
            ),
            "spec.template.roles[0].entryTemplate.spec.schedulerName",
            "is replaced by spec.schedulerName",
        ),
        # Settings the chosen rollout type ignores: warnings, since Kthena's CRD defaults
        # maxUnavailable: 1 onto every role of every object it stores.
        (
            lambda d: d["spec"].update(
                rolloutStrategy={
                    "type": "RoleRollingUpdate",
                    "rollingUpdateConfiguration": {"maxUnavailable": 1},
                }
            ),
            "spec.rolloutStrategy.rollingUpdateConfiguration",
            "has no effect with type RoleRollingUpdate",
        ),
        (
            lambda d: d["spec"]["template"]["roles"][0].update(partition=1),
            "spec.template.roles[0].partition",
            "has no effect with rolloutStrategy.type ServingGroupRollingUpdate",
        ),
        (
            lambda d: d["spec"]["template"]["roles"][0].update(maxUnavailable=1),
            "spec.template.roles[0].maxUnavailable",
            "has no effect with rolloutStrategy.type ServingGroupRollingUpdate",
        ),
        (
            lambda d: d["spec"].update(plugins=[{"name": "lws-standard-labels", "type": "BuiltIn"}]),
            "spec.plugins[0].name",
            "has no effect",
        ),
    ],
)
def test_warnings(
    serving: Callable[[], Spec], change: Callable[[Spec], Any], field: str, message: str
) -> None:
    data = serving()
    change(data)
    warning = only(data, "warning")
    assert warning.field == field
    assert message in warning.message
    assert warning.fix
    assert [p for p in problems(data) if p.severity == "error"] == []
