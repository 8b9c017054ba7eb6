"""From a PD ModelServing to the router's PD decision: the controller's pods, read by discovery,
pair the way the spec says (pure functions end to end, no processes)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from phalanx.api import ModelServing, parse_resource
from phalanx.controller.desired import steady_state
from phalanx.router.endpoints import Endpoint
from phalanx.router.pods import endpoints_from_pods
from phalanx.router.policies import BackendState
from phalanx.router.policies.pd import PdConfig, answering_states, pairable, plan_prefill
from tests.unit.api import pd_specs


def endpoints(spec: dict[str, Any]) -> dict[str, Endpoint]:
    ms, problems = parse_resource(spec)
    assert isinstance(ms, ModelServing), [p.render() for p in problems]
    pods = [obj for obj in steady_state(ms) if obj["kind"] == "Pod"]
    for i, pod in enumerate(pods):  # as the kubelet reports them once they run
        pod["metadata"]["namespace"] = "ns"
        pod["status"] = {
            "phase": "Running",
            "podIP": f"10.0.0.{i + 1}",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    return {ep.name.removeprefix("ns/"): ep for ep in endpoints_from_pods(pods)}


def test_vllm_pods_pair_within_their_model_serving_by_default() -> None:
    found = endpoints(pd_specs.vllm_nixl())
    prefill, decode = found["qwen-pd-0-prefill-0-0"], found["qwen-pd-0-decode-0-0"]
    assert (prefill.pd_role, prefill.pd_protocol, prefill.pd_pair_key) == ("prefill", "vllm", "qwen-pd")
    assert (decode.pd_role, decode.pd_protocol, decode.bootstrap_port) == ("decode", "vllm", None)
    assert pairable(decode, prefill)


def test_serving_group_pairing_keeps_each_group_to_itself() -> None:
    spec = pd_specs.vllm_nixl()
    spec["spec"]["replicas"] = 2
    spec["spec"]["template"]["disaggregation"] = {"pairing": "ServingGroup"}
    found = endpoints(spec)
    decode0 = found["qwen-pd-0-decode-0-0"]
    assert pairable(decode0, found["qwen-pd-0-prefill-0-0"])
    assert not pairable(decode0, found["qwen-pd-1-prefill-0-0"])
    states = [BackendState(replace(ep, models=("m",))) for ep in found.values()]
    plan = plan_prefill(decode0, 0.0, 4096, states, "m", PdConfig())
    assert [s.endpoint.name for s in plan.candidates] == ["ns/qwen-pd-0-prefill-0-0"]


def test_sglang_prefill_pods_carry_their_bootstrap_port() -> None:
    found = endpoints(pd_specs.sglang(bootstrap_port=9100))
    prefill, decode = found["sglang-pd-0-prefill-0-0"], found["sglang-pd-0-decode-0-0"]
    assert (prefill.pd_protocol, prefill.bootstrap_port, prefill.url) == (
        "sglang",
        9100,
        "http://10.0.0.1:30000",
    )
    assert (decode.pd_protocol, decode.bootstrap_port) == ("sglang", None)
    assert endpoints(pd_specs.sglang())["sglang-pd-0-prefill-0-0"].bootstrap_port == 8998


def test_roles_only_named_prefill_and_decode_are_served_aggregated() -> None:
    found = endpoints(pd_specs.named_only())
    assert {ep.pd_role for ep in found.values()} == {None}
    states = [BackendState(ep) for ep in found.values()]
    assert answering_states(states, "x") == (states, False)
