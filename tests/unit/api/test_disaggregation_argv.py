"""Engine flags spelled as the engines read them: the argv reader (dotted keys verbatim, flag names
with underscores as vLLM reads them, abbreviations found) and the validation errors for spellings
where Phalanx and the engine would disagree, checked against what vLLM 0.33.0 and SGLang 0.5.23's
parsers do (bench/engines/results.md)."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.api import FieldError, parse_resource
from phalanx.api.argv import abbreviations, flag_named, flag_values, option_name, underscored_options
from phalanx.api.disaggregation import role_pd
from tests.unit.api import pd_specs
from tests.unit.api.pd_specs import engine_container, kv_config
from tests.unit.api.test_disaggregation import VLLM, make_role

Spec = dict[str, Any]
CONTAINER0 = "spec.template.roles[0].entryTemplate.spec.containers[0]"
READ = ("--kv-transfer-config", "--disaggregation-mode", "--disaggregation-bootstrap-port", "--port")


@pytest.mark.parametrize(
    ("token", "name"),
    [
        ("--kv_transfer_config", "--kv-transfer-config"),
        ("--kv-transfer-config={}", "--kv-transfer-config"),
        # vLLM turns _ into - up to the first dot only: the JSON key is taken verbatim.
        ("--kv_transfer_config.kv_role", "--kv-transfer-config.kv_role"),
        ("--kv-transfer-config.kv-role", "--kv-transfer-config.kv-role"),
        ("--", None),
        ("-tp", None),
        ("kv_producer", None),
    ],
)
def test_option_name(token: str, name: str | None) -> None:
    assert option_name(token) == name


def test_a_hyphenated_dotted_key_is_not_kv_role() -> None:
    # vLLM refuses it ("kv-role Unexpected keyword argument"): reading it as the side would be a lie.
    assert (
        flag_values(["--kv-transfer-config.kv-role", "kv_producer"], "--kv-transfer-config.kv_role") is None
    )
    assert role_pd(make_role(VLLM, ["--kv-transfer-config.kv-role", "kv_producer"])) is None
    assert role_pd(make_role(VLLM, ["--kv_transfer_config.kv_role", "kv_producer"])) is not None


@pytest.mark.parametrize(
    ("token", "flag"),
    [
        ("--port", "--port"),
        ("--po=9000", "--port"),
        ("--kv-transfer", "--kv-transfer-config"),
        ("--kv_transfer", "--kv-transfer-config"),
        ("--disaggregation-b", "--disaggregation-bootstrap-port"),
        ("--disaggregation-", None),  # ambiguous among the flags asked about
        ("--max-model-len", None),
        ("9000", None),
    ],
)
def test_flag_named(token: str, flag: str | None) -> None:
    assert flag_named(token, READ) == flag


def test_abbreviations_and_underscored_options() -> None:
    command = ["vllm", "serve", "m", "--kv-transfer", "{}", "--port", "1", "--disaggregation-", "x", "--p"]
    assert abbreviations(command, READ) == [
        ("--kv-transfer", ["--kv-transfer-config"]),
        ("--disaggregation-", ["--disaggregation-mode", "--disaggregation-bootstrap-port"]),
        ("--p", ["--port"]),
    ]
    assert underscored_options(["--disaggregation_mode=prefill", "--tp-size", "kv_x", "--dp_size"]) == [
        "--disaggregation_mode=prefill",
        "--dp_size",
    ]


def argv_problems(data: Spec) -> list[FieldError]:
    """The errors about engine flag spellings (other rules are tested elsewhere)."""
    _, problems = parse_resource(data)
    words = ("abbreviates", "underscores", "which vLLM refuses (its fields")
    return [p for p in problems if any(word in p.message for word in words)]


def test_an_abbreviated_bootstrap_port_is_refused_naming_the_full_flag() -> None:
    # SGLang would listen on 9000 while the role is labelled with 8998.
    data = pd_specs.sglang()
    engine_container(data, 0)["args"] += ["--disaggregation-bootstrap", "9000"]
    (problem,) = argv_problems(data)
    assert problem.field == f"{CONTAINER0}.args[8]"
    assert problem.value == "--disaggregation-bootstrap"
    assert problem.severity == "error"
    assert problem.fix == "write the flag in full: --disaggregation-bootstrap-port"


def test_an_abbreviated_mode_is_refused() -> None:
    # Without the check the role reads as aggregated while SGLang runs it as decode.
    data = pd_specs.sglang()
    args = engine_container(data, 0)["args"]
    args[args.index("--disaggregation-mode")] = "--disaggregation-m"
    assert [p.value for p in argv_problems(data)] == ["--disaggregation-m"]


def test_an_abbreviated_kv_transfer_config_in_a_shell_script_is_refused() -> None:
    # vLLM takes --kv-transfer as --kv-transfer-config: the prefill role would run as kv_consumer.
    data = pd_specs.vllm_nixl()
    container = engine_container(data, 0)
    container["args"] = [container["args"][0] + f"  --kv-transfer '{kv_config('kv_consumer')}'\n"]
    (problem,) = argv_problems(data)
    assert (problem.field, problem.value) == (f"{CONTAINER0}.args[0]", "--kv-transfer")


def test_an_args_only_engine_is_checked_by_its_pd_flags() -> None:
    # The image's entrypoint starts the engine: its PD flags, even abbreviated, mark it as one.
    data = pd_specs.sidecar_first()
    for index in (0, 1):
        args = engine_container(data, index)["args"]
        args[args.index("--kv-transfer-config")] = "--kv-transfer-conf"
    problems = argv_problems(data)
    assert [(p.field, p.value) for p in problems] == [
        (f"spec.template.roles[{index}].entryTemplate.spec.containers[1].args[3]", "--kv-transfer-conf")
        for index in (0, 1)
    ]


def test_sglang_flags_with_underscores_are_refused() -> None:
    data = pd_specs.sglang()
    args = engine_container(data, 1)["args"]
    args[args.index("--disaggregation-mode")] = "--disaggregation_mode"
    (problem,) = argv_problems(data)
    assert problem.field == "spec.template.roles[1].entryTemplate.spec.containers[0].args[4]"
    assert "SGLang's parser refuses" in problem.message
    assert problem.fix == "write --disaggregation-mode"


def test_a_hyphenated_kv_transfer_config_key_is_refused() -> None:
    data = pd_specs.sglang()
    for index, kv_role in ((0, "kv_producer"), (1, "kv_consumer")):
        container = engine_container(data, index)
        container["command"] = ["vllm", "serve", "m"]
        container["args"] = [
            "--kv-transfer-config",
            kv_config("kv_both"),
            "--kv-transfer-config.kv-role",
            kv_role,
        ]
    problems = argv_problems(data)
    assert [(p.value, p.fix) for p in problems] == [
        ("--kv-transfer-config.kv-role", "write --kv-transfer-config.kv_role"),
    ] * 2


def test_dotted_extra_config_keys_are_the_connectors_own() -> None:
    nixl = pd_specs.vllm_nixl()
    engine_container(nixl, 0)["args"][0] += " --kv-transfer-config.kv_connector_extra_config.kv-x 1\n"
    assert argv_problems(nixl) == []


@pytest.mark.parametrize(
    "build",
    [
        pd_specs.vllm_nixl,
        pd_specs.vllm_multinode,
        pd_specs.sglang,
        pd_specs.sidecar_first,
        pd_specs.named_only,
    ],
)
def test_the_pd_shapes_as_written_have_no_spelling_problem(build: Any) -> None:
    assert argv_problems(build()) == []


def test_every_spelling_problem_at_once() -> None:
    data = pd_specs.sglang()
    engine_container(data, 0)["args"] += ["--disaggregation-bootstrap", "9000", "--served-model", "x"]
    engine_container(data, 1)["args"] += ["--disaggregation_transfer_backend", "nixl"]
    assert sorted(str(p.value) for p in argv_problems(data)) == [
        "--disaggregation-bootstrap",
        "--disaggregation_transfer_backend",
        "--served-model",
    ]
