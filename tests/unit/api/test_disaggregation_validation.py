"""Validation of prefill/decode roles: each rule with its field path, value and fix, every problem at
once, and Kthena's PD manifest shapes valid as written and after a round trip through Kthena."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phalanx.api import FieldError, ModelServing, load_text, parse_resource
from phalanx.api.disaggregation import RolePd, role_pd
from phalanx.api.yamlfile import dump_yaml
from tests.unit.api import pd_specs
from tests.unit.api.kthena import KTHENA_API_VERSION, as_phalanx, round_trip
from tests.unit.api.pd_specs import engine_container, kv_config, role

Spec = dict[str, Any]
ROLE0 = "spec.template.roles[0]"
ROLE1 = "spec.template.roles[1]"
FLAGS0 = f"{ROLE0}.entryTemplate.spec.containers[0].args"
FLAGS1 = f"{ROLE1}.entryTemplate.spec.containers[0].args"


def pd_problems(data: Spec) -> list[FieldError]:
    """Problems of the PD rules (the rest of validation is covered elsewhere)."""
    _, problems = parse_resource(data)
    return [p for p in problems if "disaggregation" in p.field or _is_pd(p)]


def _is_pd(problem: FieldError) -> bool:
    text = problem.message + problem.fix
    return any(
        word in text for word in ("prefill", "decode", "kv_role", "disaggregation", "bootstrap", "protocol")
    )


def _set_args(spec: Spec, index: int, args: list[str]) -> None:
    engine_container(spec, index)["args"] = args


def _sglang_args(mode: str, *extra: str) -> list[str]:
    return ["--model-path", "m", "--disaggregation-mode", mode, *extra]


def _declare(index: int, **fields: Any) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        role(spec, index)["disaggregation"] = fields

    return change


def _vllm_args(index: int, kv: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        engine_container(spec, index)["command"] = ["vllm", "serve", "m"]
        _set_args(spec, index, ["--kv-transfer-config", kv])

    return change


def _both(*changes: Callable[[Spec], None]) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        for one in changes:
            one(spec)

    return change


def _drop_role(index: int) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        del spec["spec"]["template"]["roles"][index]

    return change


def _pairing(value: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        spec["spec"]["template"]["disaggregation"] = {"pairing": value}

    return change


def _sglang_role(index: int, mode: str, *extra: str) -> Callable[[Spec], None]:
    def change(spec: Spec) -> None:
        container = engine_container(spec, index)
        container["command"] = ["python3", "-m", "sglang.launch_server"]
        container["args"] = _sglang_args(mode, *extra)

    return change


# (base, change, field, severity, value, words in the message, words in the fix)
CASES: list[tuple[str, Callable[[], Spec], Callable[[Spec], None], str, str, Any, str, str]] = [
    (
        "declared kind contradicts the flags",
        pd_specs.vllm_nixl,
        _declare(0, kind="decode"),
        f"{ROLE0}.disaggregation.kind",
        "error",
        "decode",
        "contradicts the engine flags of spec.template.roles[0].entryTemplate.spec.containers[0].args, "
        "which make the role prefill",
        "set kind: prefill",
    ),
    (
        "prefill without decode",
        pd_specs.vllm_nixl,
        _drop_role(1),
        "spec.template.roles",
        "error",
        "prefill",
        "have prefill role(s) (prefill) but no decode role",
        "add a decode role",
    ),
    (
        "decode without prefill",
        pd_specs.sglang,
        _drop_role(0),
        "spec.template.roles",
        "error",
        "decode",
        "have decode role(s) (decode) but no prefill role",
        "add a prefill role",
    ),
    (
        "kv_both beside PD roles",
        pd_specs.vllm_nixl,
        _vllm_args(1, kv_config("kv_both")),
        FLAGS1,
        "error",
        "kv_both",
        "does not say whether the role prefills or decodes",
        f"set {ROLE1}.disaggregation.kind: prefill or decode",
    ),
    (
        "kv_both on a lone role: aggregated KV offloading",
        pd_specs.vllm_nixl,
        _both(_drop_role(0), _vllm_args(0, kv_config("kv_both", "LMCacheConnectorV1"))),
        FLAGS0,
        "warning",
        "kv_both",
        "so it is served aggregated",
        f"set {ROLE0}.disaggregation.kind",
    ),
    (
        "a kv_role vLLM refuses",
        pd_specs.vllm_nixl,
        _vllm_args(0, kv_config("producer")),
        FLAGS0,
        "warning",
        "producer",
        "has kv_role 'producer', which vLLM refuses",
        "kv_producer (prefill), kv_consumer (decode)",
    ),
    (
        "a --kv-transfer-config that is not JSON",
        pd_specs.vllm_nixl,
        _vllm_args(0, "{kv_role: kv_producer}"),
        FLAGS0,
        "warning",
        None,
        "--kv-transfer-config is not JSON, so the engine would refuse it",
        "write it as one JSON object",
    ),
    (
        "a --kv-transfer-config from a shell variable",
        pd_specs.vllm_nixl,
        _vllm_args(0, "$KV_CONFIG"),
        FLAGS0,
        "warning",
        None,
        "uses shell variables",
        f"set {ROLE0}.disaggregation.kind",
    ),
    (
        "an SGLang mode SGLang refuses",
        pd_specs.sglang,
        _sglang_role(1, "decoder"),
        FLAGS1,
        "warning",
        "decoder",
        "--disaggregation-mode is 'decoder', which SGLang refuses",
        "prefill or decode",
    ),
    (
        "protocol against vLLM flags",
        pd_specs.vllm_nixl,
        _declare(1, protocol="sglang"),
        f"{ROLE1}.disaggregation.protocol",
        "error",
        "sglang",
        "does not match the engine: its --kv-transfer-config is vLLM's",
        "set protocol: vllm",
    ),
    (
        "protocol against SGLang flags",
        pd_specs.sglang,
        _declare(0, protocol="vllm"),
        f"{ROLE0}.disaggregation.protocol",
        "error",
        "vllm",
        "its --disaggregation-mode is SGLang's",
        "set protocol: sglang",
    ),
    (
        "protocol against the engine command",
        pd_specs.named_only,
        _both(
            _declare(0, kind="prefill", protocol="vllm"),
            _declare(1, kind="decode", protocol="vllm"),
            lambda spec: engine_container(spec, 1).update(command=["python3", "-m", "sglang.launch_server"]),
        ),
        f"{ROLE1}.disaggregation.protocol",
        "error",
        "vllm",
        "the entry container runs sglang",
        "set protocol: sglang",
    ),
    (
        "mixed protocols",
        pd_specs.vllm_nixl,
        _sglang_role(1, "decode"),
        "spec.template.roles",
        "error",
        "prefill: vllm, decode: sglang",
        "mix handover protocols",
        "run one engine kind",
    ),
    (
        "bootstrapPort other than the engine's",
        pd_specs.sglang,
        _declare(0, bootstrapPort=9000),
        f"{ROLE0}.disaggregation.bootstrapPort",
        "error",
        9000,
        "differs from the port the engine's bootstrap server listens on (8998)",
        "--disaggregation-bootstrap-port 9000",
    ),
    (
        "bootstrapPort on a decode role",
        pd_specs.sglang,
        _declare(1, bootstrapPort=8998),
        f"{ROLE1}.disaggregation.bootstrapPort",
        "warning",
        8998,
        "has no effect: only SGLang prefill roles have a bootstrap server",
        "remove it",
    ),
    (
        "bootstrapPort on a vLLM role",
        pd_specs.vllm_nixl,
        _declare(0, bootstrapPort=8998),
        f"{ROLE0}.disaggregation.bootstrapPort",
        "warning",
        8998,
        "has no effect",
        "remove it",
    ),
    (
        "roles named for a side, without a kind",
        pd_specs.named_only,
        lambda spec: None,
        f"{ROLE0}.name",
        "warning",
        "prefill",
        "is served aggregated: the name alone does not make a prefill or decode role",
        f"set {ROLE0}.disaggregation.kind: prefill",
    ),
    (
        "a decode-named role beside PD roles",
        pd_specs.vllm_nixl,
        _both(
            lambda spec: spec["spec"]["template"]["roles"].append(
                {**role(pd_specs.named_only(), 1), "name": "decode-b"}
            ),
        ),
        "spec.template.roles[2].name",
        "warning",
        "decode-b",
        "is served aggregated",
        "set spec.template.roles[2].disaggregation.kind: decode",
    ),
    (
        "a protocol without a kind",
        pd_specs.named_only,
        _declare(0, protocol="vllm"),
        f"{ROLE0}.disaggregation",
        "warning",
        None,
        "has no effect: the role has no PD kind",
        f"set {ROLE0}.disaggregation.kind",
    ),
    (
        "protocol assumed",
        pd_specs.named_only,
        _both(_declare(0, kind="prefill"), _declare(1, kind="decode")),
        f"{ROLE0}.disaggregation.protocol",
        "warning",
        None,
        "vllm (kv_transfer_params) is assumed",
        "set protocol: vllm or sglang",
    ),
    (
        "pairing without PD roles",
        pd_specs.named_only,
        _pairing("ServingGroup"),
        "spec.template.disaggregation.pairing",
        "warning",
        "ServingGroup",
        "has no effect: no role of the serving is a prefill or decode role",
        "remove it",
    ),
]


@pytest.mark.parametrize(
    ("base", "change", "field", "severity", "value", "message", "fix"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_rule(
    base: Callable[[], Spec],
    change: Callable[[Spec], None],
    field: str,
    severity: str,
    value: Any,
    message: str,
    fix: str,
) -> None:
    spec = base()
    change(spec)
    matching = [p for p in pd_problems(spec) if p.field == field and message in p.message]
    assert len(matching) == 1, [p.render() for p in pd_problems(spec)]
    (problem,) = matching
    assert problem.severity == severity
    if value is not None:
        assert value == problem.value or str(value) in str(problem.value)
    assert fix in problem.fix


@pytest.mark.parametrize(
    "base", [pd_specs.vllm_nixl, pd_specs.vllm_multinode, pd_specs.sglang, pd_specs.sidecar_first], ids=str
)
def test_well_formed_pd_servings_have_no_pd_problem(base: Callable[[], Spec]) -> None:
    assert pd_problems(base()) == []


def test_declaring_what_the_flags_say_is_fine() -> None:
    spec = pd_specs.sglang(bootstrap_port=9100)
    role(spec, 0)["disaggregation"] = {"kind": "prefill", "protocol": "sglang", "bootstrapPort": 9100}
    role(spec, 1)["disaggregation"] = {"kind": "decode", "protocol": "sglang"}
    spec["spec"]["template"]["disaggregation"] = {"pairing": "ServingGroup"}
    assert pd_problems(spec) == []


def test_declared_kinds_make_a_mock_engine_pd() -> None:
    spec = pd_specs.named_only()
    role(spec, 0)["disaggregation"] = {"kind": "prefill", "protocol": "vllm"}
    role(spec, 1)["disaggregation"] = {"kind": "decode", "protocol": "vllm"}
    assert pd_problems(spec) == []


def test_a_lone_role_named_decode_is_plainly_aggregated(serving: Callable[[], Spec]) -> None:
    assert pd_problems(serving()) == []


def test_every_problem_at_once() -> None:
    spec = pd_specs.vllm_nixl()
    role(spec, 0)["disaggregation"] = {"kind": "decode", "protocol": "sglang", "bootstrapPort": 7000}
    fields = sorted((p.field, p.severity) for p in pd_problems(spec))
    assert fields == [
        ("spec.template.roles", "error"),  # decode: sglang, decode: vllm
        ("spec.template.roles", "error"),  # now two decode roles and no prefill
        (f"{ROLE0}.disaggregation.bootstrapPort", "warning"),  # a decode role has no bootstrap server
        (f"{ROLE0}.disaggregation.kind", "error"),  # the flags say prefill
        (f"{ROLE0}.disaggregation.protocol", "error"),  # the flags are vLLM's
    ]


def test_pd_keys_in_a_template_are_warned_about() -> None:
    spec = pd_specs.named_only()
    pd_specs.role(spec, 0)["entryTemplate"]["metadata"] = {
        "labels": {"serving.phalanx.dev/pd-role": "prefill"},
        "annotations": {"serving.phalanx.dev/pd-protocol": "vllm"},
    }
    _, problems = parse_resource(spec)
    found = {p.field: p for p in problems if "is Phalanx's" in p.message}
    assert set(found) == {
        f"{ROLE0}.entryTemplate.metadata.labels['serving.phalanx.dev/pd-role']",
        f"{ROLE0}.entryTemplate.metadata.annotations['serving.phalanx.dev/pd-protocol']",
    }
    assert all(p.severity == "warning" and "disaggregation.kind" in p.fix for p in found.values())


def test_unknown_values_are_schema_errors() -> None:
    spec = pd_specs.vllm_nixl()
    role(spec, 0)["disaggregation"] = {"kind": "encode", "bootstrapPort": 70000, "side": "p"}
    spec["spec"]["template"]["disaggregation"] = {"pairing": "Group"}
    _, problems = parse_resource(spec)
    fields = {p.field for p in problems if p.severity == "error"}
    assert {
        f"{ROLE0}.disaggregation.kind",
        f"{ROLE0}.disaggregation.bootstrapPort",
        f"{ROLE0}.disaggregation.side",
        "spec.template.disaggregation.pairing",
    } <= fields


def test_problems_point_at_the_lines_of_a_file() -> None:
    spec = pd_specs.vllm_nixl()
    role(spec, 0)["disaggregation"] = {"kind": "decode"}
    loaded = load_text(dump_yaml([spec]), "pd.yaml")
    (problem,) = [p for p in loaded.errors if p.field == f"{ROLE0}.disaggregation.kind"]
    assert problem.line is not None
    assert problem.render("pd.yaml").startswith(f"pd.yaml:{problem.line}:")


VLLM_SIDES = [RolePd("prefill", "vllm"), RolePd("decode", "vllm")]
KTHENA_SHAPES: dict[str, tuple[Callable[[], Spec], list[RolePd | None]]] = {
    "vllm nixl in sh -c": (pd_specs.vllm_nixl, VLLM_SIDES),
    "vllm multi-node ray": (pd_specs.vllm_multinode, VLLM_SIDES),
    "sglang mooncake": (pd_specs.sglang, [RolePd("prefill", "sglang", 8998), RolePd("decode", "sglang")]),
    "engine after a sidecar": (pd_specs.sidecar_first, VLLM_SIDES),
    "mock engine named prefill/decode": (pd_specs.named_only, [None, None]),
}


@pytest.mark.parametrize("shape", KTHENA_SHAPES, ids=str)
def test_kthena_pd_manifests_validate_unchanged_and_get_their_kinds(shape: str) -> None:
    build, kinds = KTHENA_SHAPES[shape]
    manifest = {**build(), "apiVersion": KTHENA_API_VERSION}
    for obj in (as_phalanx(manifest), as_phalanx(round_trip(manifest))):
        loaded = load_text(dump_yaml([obj]), "kthena.yaml")
        assert loaded.errors == [], [e.render() for e in loaded.errors]
        (ms,) = loaded.resources
        assert isinstance(ms, ModelServing)
        assert [role_pd(r) for r in ms.spec.template.roles] == kinds
