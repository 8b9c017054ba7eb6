"""The operator's merge patch of a ModelServing's counts: validated, carrying the resourceVersion
read, and for roles the whole roles list as read with the new counts (a merge patch replaces a
list whole)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from phalanx.api.modelserving import ModelServing
from phalanx.controller.scaling import ScaleRefused
from phalanx.operator.autoscaler import replicas_patch

ROOT = Path(__file__).resolve().parents[3]


def stored() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart-pd.yaml").read_text())
    data["metadata"].update(namespace="default", resourceVersion="4711")
    return data


def test_spec_replicas_with_the_version_read() -> None:
    data = stored()
    patch = replicas_patch(ModelServing.model_validate(data), data, [(None, 3)])
    assert patch == {"metadata": {"resourceVersion": "4711"}, "spec": {"replicas": 3}}


def test_roles_are_sent_whole_with_each_new_count_and_nothing_else_changed() -> None:
    data = stored()
    before = copy.deepcopy(data)
    patch = replicas_patch(ModelServing.model_validate(data), data, [("decode", 2), ("prefill", 3)])
    assert not isinstance(patch, ScaleRefused)
    assert patch["metadata"] == {"resourceVersion": "4711"}
    roles = patch["spec"]["template"]["roles"]
    assert [(r["name"], r["replicas"]) for r in roles] == [("prefill", 3), ("decode", 2)]
    expected = copy.deepcopy(before["spec"]["template"]["roles"])
    expected[0]["replicas"], expected[1]["replicas"] = 3, 2
    assert roles == expected
    assert data == before  # the cached object is not changed in place


def test_an_unknown_role_is_refused_naming_the_roles() -> None:
    data = stored()
    refused = replicas_patch(ModelServing.model_validate(data), data, [("decode", 2), ("embed", 1)])
    assert isinstance(refused, ScaleRefused)
    assert "no role 'embed'" in refused.message
    assert "prefill, decode" in refused.message
