"""Prefill/decode roles on pods: the labels and annotations the router pairs them by, the gang
object that places both sides whole, and which PD changes roll the groups."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.api import ModelServing, parse_resource
from phalanx.api import labels as L
from phalanx.controller.desired import gang_object, steady_state
from phalanx.controller.revision import group_revision, role_revision
from tests.unit.api import pd_specs

Spec = dict[str, Any]
PD_KEYS = (L.PD_ROLE, L.PD_PAIR_KEY)
PD_ANNOTATIONS = (L.PD_PROTOCOL_ANNOTATION, L.PD_BOOTSTRAP_PORT_ANNOTATION)
PINNED_ROLE_REVISION = "fbc8b9b3f1"  # role_revision of tests.conftest.minimal_serving before PD


def model(data: Spec) -> ModelServing:
    ms, problems = parse_resource(data)
    assert isinstance(ms, ModelServing), [p.render() for p in problems]
    return ms


def pods(ms: ModelServing) -> list[dict[str, Any]]:
    return [o for o in steady_state(ms) if o["kind"] == "Pod"]


def pd_view(pod: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    metadata = pod["metadata"]
    labels = {k: v for k, v in metadata["labels"].items() if k in PD_KEYS}
    annotations = {k: v for k, v in metadata.get("annotations", {}).items() if k in PD_ANNOTATIONS}
    return labels, annotations


def test_every_pod_of_a_pd_role_is_labelled_workers_included() -> None:
    spec = pd_specs.vllm_multinode()
    spec["spec"]["replicas"] = 2
    views = {pod["metadata"]["name"]: pd_view(pod) for pod in pods(model(spec))}
    prefill = ({L.PD_ROLE: "prefill", L.PD_PAIR_KEY: "pd-multinode"}, {L.PD_PROTOCOL_ANNOTATION: "vllm"})
    decode = ({L.PD_ROLE: "decode", L.PD_PAIR_KEY: "pd-multinode"}, {L.PD_PROTOCOL_ANNOTATION: "vllm"})
    expected = {}
    for group in (0, 1):
        expected |= {f"pd-multinode-{group}-prefill-0-{pod}": prefill for pod in (0, 1)}
        expected |= {
            f"pd-multinode-{group}-decode-{index}-{pod}": decode for index in (0, 1) for pod in (0, 1)
        }
    assert views == expected


def test_serving_group_pairing_keys_pods_by_their_group() -> None:
    spec = pd_specs.vllm_nixl()
    spec["spec"]["replicas"] = 3
    spec["spec"]["template"]["disaggregation"] = {"pairing": "ServingGroup"}
    keys = {pod["metadata"]["name"]: pod["metadata"]["labels"][L.PD_PAIR_KEY] for pod in pods(model(spec))}
    assert keys == {
        f"qwen-pd-{group}-{side}-0-0": f"qwen-pd-{group}"
        for group in range(3)
        for side in ("prefill", "decode")
    }


@pytest.mark.parametrize(("port", "annotation"), [(None, "8998"), (9100, "9100")])
def test_sglang_prefill_pods_carry_the_bootstrap_port(port: int | None, annotation: str) -> None:
    views = {pod["metadata"]["labels"][L.ROLE]: pd_view(pod) for pod in pods(model(pd_specs.sglang(port)))}
    assert views["prefill"][1] == {
        L.PD_PROTOCOL_ANNOTATION: "sglang",
        L.PD_BOOTSTRAP_PORT_ANNOTATION: annotation,
    }
    assert views["decode"][1] == {L.PD_PROTOCOL_ANNOTATION: "sglang"}


def test_roles_without_a_pd_kind_get_nothing(serving: Any) -> None:
    for data in (serving(), pd_specs.named_only()):
        for pod in pods(model(data)):
            assert pd_view(pod) == ({}, {})


def test_declared_kind_labels_a_mock_engine() -> None:
    spec = pd_specs.named_only()
    for index, side in enumerate(("prefill", "decode")):
        pd_specs.role(spec, index)["disaggregation"] = {"kind": side, "protocol": "sglang"}
    views = {pod["metadata"]["labels"][L.ROLE]: pd_view(pod) for pod in pods(model(spec))}
    assert views["prefill"] == (
        {L.PD_ROLE: "prefill", L.PD_PAIR_KEY: "mocked"},
        {L.PD_PROTOCOL_ANNOTATION: "sglang", L.PD_BOOTSTRAP_PORT_ANNOTATION: "8998"},
    )
    assert views["decode"] == (
        {L.PD_ROLE: "decode", L.PD_PAIR_KEY: "mocked"},
        {L.PD_PROTOCOL_ANNOTATION: "sglang"},
    )


def test_our_labels_win_over_the_template() -> None:
    spec = pd_specs.vllm_nixl()
    pd_specs.role(spec, 0)["entryTemplate"]["metadata"] = {
        "labels": {L.PD_ROLE: "decode", L.PD_PAIR_KEY: "other"},
        "annotations": {L.PD_PROTOCOL_ANNOTATION: "sglang"},
    }
    prefill = next(pod for pod in pods(model(spec)) if pod["metadata"]["labels"][L.ROLE] == "prefill")
    assert pd_view(prefill) == (
        {L.PD_ROLE: "prefill", L.PD_PAIR_KEY: "qwen-pd"},
        {L.PD_PROTOCOL_ANNOTATION: "vllm"},
    )


def test_a_template_cannot_make_a_role_pd() -> None:
    # The router pairs by these keys: a template that claims them on a role without a kind is ignored.
    spec = pd_specs.named_only()
    pd_specs.role(spec, 0)["entryTemplate"]["metadata"] = {
        "labels": {L.PD_ROLE: "prefill", L.PD_PAIR_KEY: "mocked", "app": "mock"},
        "annotations": {L.PD_PROTOCOL_ANNOTATION: "vllm", "note": "kept"},
    }
    prefill = next(pod for pod in pods(model(spec)) if pod["metadata"]["labels"][L.ROLE] == "prefill")
    assert pd_view(prefill) == ({}, {})
    assert prefill["metadata"]["labels"]["app"] == "mock"
    assert prefill["metadata"]["annotations"]["note"] == "kept"


def test_pd_podgroup_has_a_subgroup_per_side_each_multi_node() -> None:
    # prefill: 1 instance of 2 pods; decode: 2 instances of 2 pods. Volcano must place each role
    # instance whole (matchLabelKeys role-index), and the ServingGroup only with both sides.
    podgroup = gang_object(model(pd_specs.vllm_multinode()), 0)
    assert podgroup is not None
    spec = podgroup["spec"]
    assert spec["minMember"] == 6
    assert spec["subGroupPolicy"] == [
        {
            "name": side,
            "subGroupSize": 2,
            "minSubGroups": instances,
            "labelSelector": {"matchLabels": {L.NAME: "pd-multinode", L.ROLE: side}},
            "matchLabelKeys": [L.ROLE_INDEX],
        }
        for side, instances in (("prefill", 1), ("decode", 2))
    ]


def test_pd_podgroup_honours_min_role_replicas() -> None:
    data = pd_specs.vllm_multinode()
    data["spec"]["template"]["gangPolicy"] = {"minRoleReplicas": {"decode": 1}}
    podgroup = gang_object(model(data), 0)
    assert podgroup is not None
    assert podgroup["spec"]["minMember"] == 4
    assert [p["minSubGroups"] for p in podgroup["spec"]["subGroupPolicy"]] == [1, 1]


def _revisions(data: Spec) -> tuple[str, list[str]]:
    ms = model(data)
    return group_revision(ms), [role_revision(ms, role) for role in ms.spec.template.roles]


def test_declaring_what_the_flags_say_rolls_nothing() -> None:
    before = _revisions(pd_specs.vllm_nixl())
    data = pd_specs.vllm_nixl()
    pd_specs.role(data, 0)["disaggregation"] = {"kind": "prefill", "protocol": "vllm"}
    pd_specs.role(data, 1)["disaggregation"] = {"kind": "decode", "bootstrapPort": 9000}  # ignored: vLLM
    assert _revisions(data) == before


def test_pairing_on_a_serving_without_pd_roles_rolls_nothing(serving: Any) -> None:
    data = serving()
    before = _revisions(data)
    data["spec"]["template"]["disaggregation"] = {"pairing": "ServingGroup"}
    assert _revisions(data) == before


def test_changing_the_pairing_scope_rolls_the_pd_roles() -> None:
    # Labels are written when a pod is created: a pod made later by recovery or scaling would carry
    # the new key and no longer pair with its group's older pods, so the change rolls.
    before = _revisions(pd_specs.vllm_nixl())
    data = pd_specs.vllm_nixl()
    data["spec"]["template"]["disaggregation"] = {"pairing": "ServingGroup"}
    after = _revisions(data)
    assert after[0] != before[0]
    assert all(a != b for a, b in zip(after[1], before[1], strict=True))


def test_declaring_a_kind_the_flags_do_not_give_rolls_that_role_only() -> None:
    before = _revisions(pd_specs.named_only())
    data = pd_specs.named_only()
    pd_specs.role(data, 1)["disaggregation"] = {"kind": "decode"}
    after = _revisions(data)
    assert after[1][0] == before[1][0]
    assert after[1][1] != before[1][1]


def test_a_role_without_pd_keeps_its_revision(serving: Any) -> None:
    # The hash of a role without a PD kind is the one it had before PD existed (pinned from main).
    ms = model(serving())
    assert [role_revision(ms, role) for role in ms.spec.template.roles] == [PINNED_ROLE_REVISION]
