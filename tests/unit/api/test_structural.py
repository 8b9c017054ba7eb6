"""The CRD's structural limits, checked by validate with our messages (read from the generated CRD)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from phalanx.api import parse_resource
from phalanx.api.crd import openapi_schema
from phalanx.api.errors import only_errors
from phalanx.api.structural import structural_problems
from tests.conftest import minimal_serving

Spec = dict[str, Any]
CONTAINER = ["spec", "template", "roles", 0, "entryTemplate", "spec", "containers", 0]


def _at(data: Spec, path: list[Any]) -> Any:
    for part in path:
        data = data[part]
    return data


def _errors(change: Callable[[Spec], object]) -> list[tuple[str, str]]:
    data = copy.deepcopy(minimal_serving())
    change(data)
    return [(p.field, p.message) for p in only_errors(parse_resource(data)[1])]


def _more_roles(data: Spec) -> None:
    roles = data["spec"]["template"]["roles"]
    roles += [{**copy.deepcopy(roles[0]), "name": f"r{i}"} for i in range(4)]


CASES: list[tuple[str, Callable[[Spec], object], str, str]] = [
    ("five roles", _more_roles, "spec.template.roles", "has 5 items, at most 4"),
    (
        "a list keyed by name",
        lambda d: _at(d, CONTAINER).update(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.template.roles[0].entryTemplate.spec.containers[0].env[1]",
        "duplicates env[0] (name 'A')",
    ),
    (
        "ports keyed by number and the protocol's default",
        lambda d: _at(d, CONTAINER)["ports"].append({"containerPort": 8000, "protocol": "TCP"}),
        "spec.template.roles[0].entryTemplate.spec.containers[0].ports[1]",
        "duplicates ports[0] (containerPort 8000, protocol 'TCP')",
    ),
    (
        "a quantity",
        lambda d: _at(d, CONTAINER)["resources"].update(requests={"memory": " 1Gi"}),
        "spec.template.roles[0].entryTemplate.spec.containers[0].resources.requests.memory",
        "is not a Kubernetes quantity",
    ),
    (
        "a percentage with a leading zero",
        lambda d: d["spec"].update(rolloutStrategy={"rollingUpdateConfiguration": {"maxSurge": "007%"}}),
        "spec.rolloutStrategy.rollingUpdateConfiguration.maxSurge",
        "percentage from 0% to 100%",
    ),
    (
        "a number beyond 64 bits",
        lambda d: d["spec"]["template"].update(restartGracePeriodSeconds=2**63),
        "spec.template.restartGracePeriodSeconds",
        "beyond 64-bit integers",
    ),
    (
        "a pod's 32-bit field",
        lambda d: _at(d, CONTAINER).update(
            readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 2**31}
        ),
        "spec.template.roles[0].entryTemplate.spec.containers[0].readinessProbe.periodSeconds",
        "beyond the 32-bit integers",
    ),
    (
        "a long HyperNode name",
        lambda d: d["spec"]["template"].update(
            networkTopology={"groupPolicy": {"highestTierName": "n" * 254}}
        ),
        "spec.template.networkTopology.groupPolicy.highestTierName",
        "is 254 characters long, at most 253",
    ),
]


@pytest.mark.parametrize(("case", "change", "field", "message"), CASES, ids=[c for c, _, _, _ in CASES])
def test_each_limit_is_an_error_at_its_field(
    case: str, change: Callable[[Spec], object], field: str, message: str
) -> None:
    errors = _errors(change)
    assert any(f == field and message in m for f, m in errors), errors


def test_strings_are_not_numbers_as_the_api_server_sees_json() -> None:
    assert ("spec.replicas", "must be a whole number") in _errors(lambda d: d["spec"].update(replicas="2"))
    assert any(f == "spec.replicas" for f, _ in _errors(lambda d: d["spec"].update(replicas=True)))


def test_the_limits_come_from_the_generated_crd() -> None:
    schema = openapi_schema("ModelServing")
    roles = schema["properties"]["spec"]["properties"]["template"]["properties"]["roles"]
    assert roles["maxItems"] == 4
    data = copy.deepcopy(minimal_serving())
    _more_roles(data)
    (problem,) = structural_problems(data, schema)
    assert problem.path == ("spec", "template", "roles")


def test_a_limit_already_reported_is_not_reported_twice() -> None:
    errors = _errors(lambda d: _at(d, CONTAINER)["resources"].update(limits={"cpu": "lots"}))
    assert [f for f, _ in errors].count(
        "spec.template.roles[0].entryTemplate.spec.containers[0].resources.limits.cpu"
    ) == 1
