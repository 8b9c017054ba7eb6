"""Revision hashes change exactly when pods would change."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from phalanx.api import ModelServing, load_text, parse_resource
from phalanx.controller.desired import steady_state
from phalanx.controller.revision import group_revision, role_revision
from tests.conftest import EXAMPLES

Spec = dict[str, Any]


def revisions(data: Spec) -> tuple[str, str]:
    ms, problems = parse_resource(data)
    assert isinstance(ms, ModelServing), problems
    return group_revision(ms), role_revision(ms, ms.spec.template.roles[0])


def change(path: list[Any], value: Any) -> Callable[[Spec], None]:
    def apply(data: Spec) -> None:
        node: Any = data
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        node[path[-1]] = value

    return apply


ROLE = ["spec", "template", "roles", 0]
NOT_POD_AFFECTING = {
    "group replicas": change(["spec", "replicas"], 7),
    "role replicas": change([*ROLE, "replicas"], 5),
    "rollout settings": change(["spec", "rolloutStrategy"], {"rollingUpdateConfiguration": {"partition": 1}}),
    "recovery policy": change(["spec", "recoveryPolicy"], "None"),
    "restart grace period": change(["spec", "template", "restartGracePeriodSeconds"], 30),
    "gang minimum": change(["spec", "template", "gangPolicy"], {"minRoleReplicas": {"decode": 1}}),
    "unrelated annotation": change(["metadata", "annotations"], {"team": "a"}),
}
POD_AFFECTING = {
    "image": change([*ROLE, "entryTemplate", "spec", "containers", 0, "image"], "vllm/vllm-openai:v0.12.0"),
    "worker image": change([*ROLE, "workerTemplate", "spec", "containers", 0, "image"], "other"),
    "worker count": change([*ROLE, "workerReplicas"], 2),
    "template label": change([*ROLE, "entryTemplate", "metadata"], {"labels": {"tier": "gold"}}),
    "scheduler name": change(["spec", "schedulerName"], "default-scheduler"),
    "network topology": change(
        ["spec", "template", "networkTopology"], {"groupPolicy": {"mode": "hard", "highestTierAllowed": 1}}
    ),
    "gang scheduler": change(["metadata", "annotations"], {"serving.phalanx.dev/gang-scheduler": "none"}),
}


@pytest.mark.parametrize("name", NOT_POD_AFFECTING)
def test_same_revision_when_pods_would_not_change(serving: Callable[[], Spec], name: str) -> None:
    data = serving()
    before = revisions(data)
    NOT_POD_AFFECTING[name](data)
    assert revisions(data) == before


@pytest.mark.parametrize("name", POD_AFFECTING)
def test_new_revision_when_pods_would_change(serving: Callable[[], Spec], name: str) -> None:
    data = serving()
    group_before, role_before = revisions(data)
    POD_AFFECTING[name](data)
    group_after, role_after = revisions(data)
    assert group_after != group_before
    assert role_after != role_before


def test_role_revision_isolates_roles(serving: Callable[[], Spec]) -> None:
    data = serving()
    second = {**copy.deepcopy(data["spec"]["template"]["roles"][0]), "name": "prefill"}
    data["spec"]["template"]["roles"].append(second)
    ms, _ = parse_resource(data)
    assert isinstance(ms, ModelServing)
    decode_before = role_revision(ms, ms.spec.template.roles[0])
    data["spec"]["template"]["roles"][1]["entryTemplate"]["spec"]["containers"][0]["image"] = "new"
    ms2, _ = parse_resource(data)
    assert isinstance(ms2, ModelServing)
    assert role_revision(ms2, ms2.spec.template.roles[0]) == decode_before
    assert role_revision(ms2, ms2.spec.template.roles[1]) != role_revision(ms, ms.spec.template.roles[1])
    assert group_revision(ms2) != group_revision(ms)


def test_revision_is_stable_across_processes(serving: Callable[[], Spec]) -> None:
    # A restarted controller must compute the same hash from the same spec (no salted hash()).
    assert revisions(serving()) == revisions(serving())
    assert len(revisions(serving())[0]) == 10


# Computed before pods gained the compatibility labels, LWS env and DNS names. Revisions hash the
# spec, never the rendered pods: a Phalanx upgrade that changes what pods look like must not roll
# running groups. A change here rolls every group on every cluster; make it on purpose only.
PINNED = {
    "llama-multinode.yaml": ("6330805181", ["eb97bb0008"]),
    "quickstart.yaml": ("49eb3af2f8", ["3bce45a0c0"]),
}


@pytest.mark.parametrize("example", PINNED)
def test_revisions_of_known_specs_do_not_move(example: str) -> None:
    (ms,) = load_text((EXAMPLES / example).read_text()).resources
    assert isinstance(ms, ModelServing)
    assert (group_revision(ms), [role_revision(ms, r) for r in ms.spec.template.roles]) == PINNED[example]
    pods = [o for o in steady_state(ms) if o["kind"] == "Pod"]
    assert {p["metadata"]["labels"]["serving.phalanx.dev/revision"] for p in pods} == {PINNED[example][0]}


def test_minimal_spec_revision_does_not_move(serving: Callable[[], Spec]) -> None:
    assert revisions(serving()) == ("e18011e402", "fbc8b9b3f1")
