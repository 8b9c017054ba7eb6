"""A ModelDeployment with spec.disaggregation: its problems all at once (field, value, fix, line), and the
ModelServing it compiles to (roles prefill and decode, their sizes and engine flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from phalanx.api import FieldError, ModelDeployment, load_text
from phalanx.api.deployment_validation import parse_ratio
from phalanx.api.disaggregation import role_pd
from phalanx.api.validation import validate_model_serving
from phalanx.compiler import compile_deployment, deployment_problems
from phalanx.planner import find_model

ROOT = Path(__file__).parents[3]


def spec(*lines: str) -> str:
    """A ModelDeployment file whose spec is `lines`: the first of them is line 6 of the file."""
    header = "apiVersion: serving.phalanx.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: m\nspec:\n"
    return header + "".join(f"  {line}\n" for line in lines)


SHAPE = ("model: llama-3.1-8b-instruct", "instanceType: p5.48xlarge", "maxModelLen: 32768")


def all_problems(text: str) -> list[FieldError]:
    return load_text(text, "md.yaml", check=deployment_problems).problems


def problems(text: str) -> dict[str, FieldError]:
    return {p.field: p for p in all_problems(text)}


def deployment(**extra: Any) -> ModelDeployment:
    data = {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m"},
        "spec": {
            "model": "llama-3.1-8b-instruct",
            "instanceType": "p5.48xlarge",
            "maxModelLen": 32768,
            **extra,
        },
    }
    loaded = load_text(yaml.safe_dump(data), "md.yaml")
    assert [p for p in loaded.problems if p.severity == "error"] == []
    (md,) = loaded.resources
    assert isinstance(md, ModelDeployment)
    return md


def test_every_disaggregation_problem_at_once_with_its_line() -> None:
    text = spec(
        *SHAPE,
        "engine: sglang",
        "disaggregation:",
        "  connector: lmcache",
        "  ratio: 1-3",
        "  prefill: {replicas: 1, nodes: 3}",
        "maxNodes: 2",
    )
    found = problems(text)
    connector = found["spec.disaggregation.connector"]
    assert (connector.line, connector.value, connector.fix) == (11, "lmcache", "use one of mooncake, nixl")
    assert connector.message == "is not a KV connector of engine sglang"
    ratio = [p.message for p in all_problems(text) if p.field == "spec.disaggregation.ratio"]
    assert ratio == [
        "cannot be combined with prefill.replicas",
        "must be 'prefill:decode', two whole numbers of at least 1",
    ]
    nodes = found["spec.disaggregation.prefill.nodes"]
    assert (nodes.value, nodes.message) == (3, "is more than maxNodes (2)")
    assert {p.severity for p in found.values()} == {"error"}


def test_a_bad_ratio_text_and_a_lone_replicas_are_each_reported() -> None:
    found = problems(spec(*SHAPE, "disaggregation:", "  ratio: 'three:one'"))
    assert (
        found["spec.disaggregation.ratio"].message
        == "must be 'prefill:decode', two whole numbers of at least 1"
    )
    assert found["spec.disaggregation.ratio"].line == 10
    lone = problems(spec(*SHAPE, "disaggregation:", "  decode: {replicas: 3}"))
    assert lone["spec.disaggregation.prefill.replicas"].message == "is required with decode.replicas"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("1:3", (1, 3)), (" 2 : 2 ", (2, 2)), ("0:1", None), ("1:3:1", None), ("a:b", None), ("-1:2", None)],
)
def test_parse_ratio(text: str, parsed: tuple[int, int] | None) -> None:
    assert parse_ratio(text) == parsed


def test_p2pnccl_needs_an_image_that_has_it_and_its_proxy() -> None:
    missing = problems(spec(*SHAPE, "disaggregation:", "  connector: p2pnccl"))
    assert missing["spec.disaggregation.proxy"].message == "is required with connector p2pnccl as host:port"
    # vLLM 0.33.0 (the default image) has no P2pNcclConnector: the engine would fail at start
    default_image = missing["spec.disaggregation.connector"]
    assert (default_image.severity, default_image.value) == ("error", "p2pnccl")
    assert "vLLM 0.33.0" in default_image.message
    bad = problems(
        spec(*SHAPE, "image: my/vllm:old", "disaggregation:", "  connector: p2pnccl", "  proxy: 'proxy:http'")
    )
    assert bad["spec.disaggregation.proxy"].value == "proxy:http"
    assert bad["spec.disaggregation.connector"].severity == "warning"
    extra = problems(spec(*SHAPE, "disaggregation:", "  proxy: 'p:1'"))
    assert extra["spec.disaggregation.proxy"].severity == "warning"


def test_a_side_that_does_not_fit_is_reported_on_its_own_field() -> None:
    found = problems(
        spec(
            "model: llama-3.3-70b-instruct",
            "instanceType: g5.12xlarge",
            "maxModelLen: 8192",
            "disaggregation:",
            "  decode: {nodes: 1}",
        )
    )
    problem = found["spec.disaggregation.decode.nodes"]
    assert problem.message.startswith("decode role: ")
    assert problem.line == 10


def test_compiles_to_prefill_and_decode_roles_sized_by_the_plan() -> None:
    compiled = compile_deployment(
        deployment(disaggregation={}, workload={"promptTokens": 16000, "outputTokens": 256})
    )
    roles = compiled.model_serving.spec.template.roles
    assert [role.name for role in roles] == ["prefill", "decode"]
    assert compiled.pd is not None
    assert (roles[0].replicas, roles[1].replicas) == compiled.pd.replicas == compiled.pd.proposed
    prefill_args = " ".join(roles[0].entry_template.spec["containers"][0]["args"])
    assert '"kv_role":"kv_producer"' in prefill_args
    decode_args = " ".join(roles[1].entry_template.spec["containers"][0]["args"])
    assert '"kv_role":"kv_consumer"' in decode_args
    # the plan tells both sides, then the ratio, so `phalanx render` and the status show it
    arithmetic = compiled.plan.arithmetic
    assert arithmetic[0] == "prefill role instance:"
    assert "decode role instance:" in arithmetic
    assert arithmetic[-1].startswith("role instances per ServingGroup:")
    annotation = compiled.model_serving.metadata.annotations["serving.phalanx.dev/plan"]
    assert annotation.startswith(f"{compiled.pd.replicas[0]} prefill x (1 node(s) x 8 H100-80GB")


def test_pinned_replicas_win_and_sides_follow_their_own_pins() -> None:
    compiled = compile_deployment(
        deployment(
            engine="sglang",
            disaggregation={"prefill": {"replicas": 1, "tensorParallelSize": 8}, "decode": {"replicas": 3}},
        )
    )
    prefill, decode = compiled.model_serving.spec.template.roles
    assert (prefill.replicas, decode.replicas) == (1, 3)
    args = prefill.entry_template.spec["containers"][0]["args"]
    assert args[args.index("--tp-size") + 1] == "8"
    assert args[args.index("--disaggregation-transfer-backend") + 1] == "mooncake"  # SGLang's default
    assert "--disaggregation-bootstrap-port" in args
    assert "--disaggregation-bootstrap-port" not in decode.entry_template.spec["containers"][0]["args"]


def test_short_prompts_compile_with_a_warning_that_pd_does_not_pay() -> None:
    compiled = compile_deployment(
        deployment(disaggregation={"ratio": "1:1"}, workload={"promptTokens": 200, "outputTokens": 300})
    )
    (verdict,) = [w for w in compiled.warnings if w.field == "spec.disaggregation"]
    assert verdict.severity == "warning"
    assert verdict.message.startswith("disaggregation does not pay for prompts of 200 tokens")
    assert not [w for w in compiled.warnings if w.field == "spec.workload"]  # declared
    assert [r.replicas for r in compiled.model_serving.spec.template.roles] == [1, 1]


def test_a_deployment_without_disaggregation_keeps_its_one_engine_role() -> None:
    compiled = compile_deployment(deployment())
    assert [role.name for role in compiled.model_serving.spec.template.roles] == ["engine"]
    assert compiled.pd is None


def test_the_pd_quickstart_validates_and_plans() -> None:
    path = ROOT / "examples" / "quickstart-pd-deployment.yaml"
    loaded = load_text(path.read_text(), str(path), check=deployment_problems)
    assert [p for p in loaded.problems if p.severity == "error"] == []
    (md,) = loaded.resources
    assert isinstance(md, ModelDeployment)
    compiled = compile_deployment(md)
    prefill, decode = compiled.model_serving.spec.template.roles
    assert prefill.entry_template.spec["containers"][0]["command"] == ["phalanx", "sim"]
    args = prefill.entry_template.spec["containers"][0]["args"]
    assert "--kv-transfer-config" in args
    # the simulator moves the model's KV per token: every layer, every KV head, K and V, 2 bytes
    tiny = find_model("tiny-test")
    assert tiny is not None
    per_token = 2 * tiny.num_layers * tiny.num_kv_heads * tiny.head_dim * 2
    assert args[args.index("--kv-bytes-per-token") + 1] == str(per_token)
    assert (prefill.replicas, decode.replicas) == (1, 1)
    # a simulated GPU is not in the catalog: the prefill figure says its peak is a stand-in
    assert any(
        line.endswith("(GPU not in the catalog: its peak assumed)") for line in compiled.plan.arithmetic
    )


@pytest.mark.parametrize(
    ("engine", "protocol", "bootstrap"),
    [("vllm", "vllm", None), ("sim", "vllm", None), ("sglang", "sglang", 8998)],
)
def test_roles_state_their_side_and_agree_with_their_engine_flags(
    engine: str, protocol: str, bootstrap: int | None
) -> None:
    compiled = compile_deployment(
        deployment(engine=engine, disaggregation={"ratio": "1:2", "pairing": "ServingGroup"})
    )
    ms = compiled.model_serving
    prefill, decode = ms.spec.template.roles
    assert prefill.disaggregation is not None and decode.disaggregation is not None
    assert (prefill.disaggregation.kind, decode.disaggregation.kind) == ("prefill", "decode")
    assert prefill.disaggregation.protocol == decode.disaggregation.protocol == protocol
    assert prefill.disaggregation.bootstrap_port == bootstrap
    assert ms.spec.template.disaggregation is not None
    assert ms.spec.template.disaggregation.pairing == "ServingGroup"
    # what the engine flags say alone is the same side: the stated kind never contradicts them
    for role in (prefill, decode):
        assert role.disaggregation is not None
        read = role_pd(role.model_copy(update={"disaggregation": None}))
        assert read is not None and read.kind == role.disaggregation.kind
    assert validate_model_serving(ms) == []


def test_an_undeclared_workload_behind_a_proposed_ratio_is_a_warning_on_its_field() -> None:
    found = problems(spec(*SHAPE, "disaggregation:", "  connector: nixl"))
    workload = found["spec.workload"]
    assert workload.severity == "warning"
    assert workload.message.startswith("is not declared: the prefill:decode ratio ")
    assert workload.message.endswith("assumes prompts of 1024 and outputs of 128 tokens")
    pinned = problems(spec(*SHAPE, "disaggregation:", "  ratio: '1:2'"))
    assert "spec.workload" not in pinned  # the user chose the sizes: nothing was assumed for them


def test_a_ttft_target_without_disaggregation_is_a_warning() -> None:
    found = problems(spec(*SHAPE, "workload: {promptTokens: 4000, ttftSeconds: 0.5}"))
    ttft = found["spec.workload.ttftSeconds"]
    assert (ttft.severity, ttft.value) == ("warning", 0.5)
    assert ttft.fix == "add spec.disaggregation, or remove ttftSeconds"
