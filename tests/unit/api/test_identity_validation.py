"""Rules about pods' DNS identity: Service names that would collide, and hostnames Phalanx sets."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from phalanx.api import FieldError, ModelServing, parse_resource
from phalanx.controller.desired import steady_state

Spec = dict[str, Any]


def with_second_role(data: Spec, name: str) -> Spec:
    second = copy.deepcopy(data["spec"]["template"]["roles"][0])
    second["name"] = name
    data["spec"]["template"]["roles"].append(second)
    return data


def errors(data: Spec) -> list[FieldError]:
    return [p for p in parse_resource(data)[1] if p.severity == "error"]


def service_names(data: Spec) -> list[str]:
    ms, _ = parse_resource(data)
    assert isinstance(ms, ModelServing)
    return [o["metadata"]["name"] for o in steady_state(ms) if o["kind"] == "Service"]


def test_a_role_named_like_another_roles_entry_service_is_an_error(serving: Callable[[], Spec]) -> None:
    # decode has 2 instances: instance 1's entry Service is demo-0-decode-1-0, which is also what
    # the subdomain Service of a role named decode-1-0 would be called.
    data = with_second_role(serving(), "decode-1-0")
    names = service_names(data)
    assert len(names) != len(set(names))  # what the rule prevents: two Services, one name
    (problem,) = errors(data)
    assert problem.field == "spec.template.roles[1].name"
    assert problem.value == "decode-1-0"
    assert "entry Service of role 'decode' instance 1" in problem.message
    assert "'demo-<g>-decode-1-0'" in problem.message
    assert "followed by -<number>-0" in problem.fix


@pytest.mark.parametrize("name", ["decode-1", "decode-0-1", "decode-01-0", "decode-x-0", "prefill"])
def test_role_names_that_cannot_collide_are_fine(serving: Callable[[], Spec], name: str) -> None:
    data = with_second_role(serving(), name)
    assert errors(data) == []
    names = service_names(data)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("field", ["hostname", "subdomain"])
def test_a_template_hostname_or_subdomain_is_replaced_with_a_warning(
    serving: Callable[[], Spec], field: str
) -> None:
    data = serving()
    data["spec"]["template"]["roles"][0]["workerTemplate"]["spec"][field] = "mine"
    (problem,) = parse_resource(data)[1]
    assert problem.severity == "warning"
    assert problem.field == f"spec.template.roles[0].workerTemplate.spec.{field}"
    assert problem.value == "mine" and problem.fix == "remove it"
    ms, _ = parse_resource(data)
    assert isinstance(ms, ModelServing)
    worker = next(o for o in steady_state(ms) if o["kind"] == "Pod" and o["metadata"]["name"].endswith("-1"))
    assert worker["spec"][field] != "mine"
