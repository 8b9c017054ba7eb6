"""The ModelServing CRD's prefill/decode fields on a real API server: stored with their defaults and
read back to the same PD kinds, wrong values refused, and a PD serving's pods (PD labels) and Volcano
PodGroup (a subgroup per side, each multi-node) accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from phalanx.api import ModelServing
from phalanx.api.disaggregation import RolePd, pair_key, role_pd
from phalanx.controller.desired import gang_object, pod
from tests.cluster.controlplane import PHALANX_CRDS, ControlPlane, install_crds
from tests.unit.api import pd_specs

pytestmark = pytest.mark.cluster


def dry(cp: ControlPlane, path: str, obj: dict[str, Any]) -> tuple[int, Any]:
    return cp.http("POST", f"{path}?dryRun=All&fieldValidation=Strict", body=obj)


def test_pd_fields_on_a_real_api_server(control_plane: ControlPlane) -> None:
    install_crds(control_plane.client(), PHALANX_CRDS)
    ns = control_plane.new_namespace("pdapi")
    base = f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{ns}/modelservings"
    spec = pd_specs.named_only()
    spec["metadata"]["namespace"] = ns
    pd_specs.role(spec, 0)["disaggregation"] = {
        "kind": "prefill",
        "protocol": "sglang",
        "bootstrapPort": 9100,
    }
    pd_specs.role(spec, 1)["disaggregation"] = {"kind": "decode", "protocol": "sglang"}
    spec["spec"]["template"]["disaggregation"] = {}
    code, stored = dry(control_plane, base, spec)
    assert code == 201, stored
    assert stored["spec"]["template"]["disaggregation"] == {"pairing": "ModelServing"}  # CRD default
    ms = ModelServing.model_validate(stored)
    assert [role_pd(r) for r in ms.spec.template.roles] == [
        RolePd("prefill", "sglang", 9100),
        RolePd("decode", "sglang"),
    ]
    for role in ms.spec.template.roles:
        code, answer = dry(control_plane, f"/api/v1/namespaces/{ns}/pods", pod(ms, 0, role, 0, 0))
        assert code == 201, answer
    for bad, where in (
        ({"kind": "encode"}, "kind"),
        ({"bootstrapPort": 70000}, "bootstrapPort"),
        ({"side": "p"}, "side"),
    ):
        broken = copy.deepcopy(spec)
        pd_specs.role(broken, 0)["disaggregation"] = bad
        code, answer = dry(control_plane, base, broken)
        assert code in (400, 422) and where in str(answer), (bad, code, answer)
    broken = copy.deepcopy(spec)
    broken["spec"]["template"]["disaggregation"] = {"pairing": "Group"}
    code, answer = dry(control_plane, base, broken)
    assert code == 422 and "pairing" in str(answer), answer
    # A PD serving's Volcano PodGroup, one subgroup per side, and its multi-node pods.
    multi = pd_specs.vllm_multinode()
    multi["metadata"]["namespace"] = ns
    multi["spec"]["template"]["disaggregation"] = {"pairing": "ServingGroup"}
    code, stored = dry(control_plane, base, multi)
    assert code == 201, stored
    ms = ModelServing.model_validate(stored)
    podgroup = gang_object(ms, 0)
    assert podgroup is not None
    code, answer = dry(
        control_plane, f"/apis/scheduling.volcano.sh/v1beta1/namespaces/{ns}/podgroups", podgroup
    )
    assert code == 201, answer
    assert [p["name"] for p in answer["spec"]["subGroupPolicy"]] == ["prefill", "decode"]
    for role in ms.spec.template.roles:
        for index in (0, 1):
            obj = pod(ms, 0, role, 0, index)
            assert (
                obj["metadata"]["labels"]["serving.phalanx.dev/pd-pair-key"]
                == pair_key(ms, 0)
                == "pd-multinode-0"
            )
            code, answer = dry(control_plane, f"/api/v1/namespaces/{ns}/pods", obj)
            assert code == 201, answer
