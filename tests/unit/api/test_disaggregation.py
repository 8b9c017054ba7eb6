"""role_pd: a role's prefill/decode kind, protocol and bootstrap port, declared or read from the
engine flags of its entry container, and never from its name alone."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.api import ModelServing, parse_resource
from phalanx.api.argv import container_commands, flag_values
from phalanx.api.disaggregation import (
    RolePd,
    command_engine,
    engine_flags,
    pair_key,
    role_pd,
)
from phalanx.api.modelserving import PodTemplate, Role
from tests.unit.api import pd_specs
from tests.unit.api.pd_specs import kv_config

Spec = dict[str, Any]


def make_role(
    command: list[str] | None = None,
    args: list[str] | None = None,
    disaggregation: Spec | None = None,
    name: str = "r",
) -> Role:
    container: Spec = {"name": "engine", "image": "x"}
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    data: Spec = {"name": name, "entryTemplate": {"spec": {"containers": [container]}}}
    if disaggregation is not None:
        data["disaggregation"] = disaggregation
    return Role.model_validate(data)


VLLM = ["vllm", "serve", "m"]
SGLANG = ["python3", "-m", "sglang.launch_server", "--model-path", "m"]


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        # vLLM: kv_role decides; kv_both and a missing kv_role say nothing.
        (VLLM, ["--kv-transfer-config", kv_config("kv_producer")], RolePd("prefill", "vllm")),
        (VLLM, ["--kv-transfer-config", kv_config("kv_consumer")], RolePd("decode", "vllm")),
        (VLLM, [f"--kv-transfer-config={kv_config('kv_consumer')}"], RolePd("decode", "vllm")),
        (VLLM, ["--kv_transfer_config", kv_config("kv_producer")], RolePd("prefill", "vllm")),
        (VLLM, ["--kv-transfer-config", kv_config("kv_both")], None),
        (VLLM, ["--kv-transfer-config", '{"kv_connector":"NixlConnector"}'], None),
        (VLLM, ["--kv-transfer-config", "not json"], None),
        (VLLM, ["--kv-transfer-config", '{"kv_role":"$ROLE"}'], None),
        (VLLM, ["--kv-transfer-config", '["kv_producer"]'], None),
        # The dotted form sets one key, over the JSON.
        (VLLM, ["--kv-transfer-config.kv_role", "kv_consumer"], RolePd("decode", "vllm")),
        (
            VLLM,
            ["--kv-transfer-config", kv_config("kv_both"), "--kv-transfer-config.kv_role", "kv_producer"],
            RolePd("prefill", "vllm"),
        ),
        # The last occurrence wins, as in argparse.
        (
            VLLM,
            [
                "--kv-transfer-config",
                kv_config("kv_producer"),
                "--kv-transfer-config",
                kv_config("kv_consumer"),
            ],
            RolePd("decode", "vllm"),
        ),
        # SGLang: --disaggregation-mode decides; the bootstrap port is the prefill side's.
        ([*SGLANG, "--disaggregation-mode", "prefill"], None, RolePd("prefill", "sglang", 8998)),
        ([*SGLANG, "--disaggregation-mode", "decode"], None, RolePd("decode", "sglang")),
        (
            SGLANG,
            ["--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port", "9100"],
            RolePd("prefill", "sglang", 9100),
        ),
        (
            SGLANG,
            ["--disaggregation-mode", "decode", "--disaggregation-bootstrap-port", "9100"],
            RolePd("decode", "sglang"),
        ),
        (SGLANG, ["--disaggregation-mode", "null"], None),
        (SGLANG, ["--disaggregation_mode=prefill"], RolePd("prefill", "sglang", 8998)),
        # The simulator speaks whichever flavour its flags are.
        (["phalanx", "sim"], ["--kv-transfer-config", kv_config("kv_producer")], RolePd("prefill", "vllm")),
        (["phalanx", "sim"], ["--disaggregation-mode", "decode"], RolePd("decode", "sglang")),
        # No engine flags: aggregated, whatever the engine.
        (VLLM, [], None),
        (SGLANG, [], None),
        (None, None, None),
    ],
)
def test_kind_from_engine_flags(
    command: list[str] | None, args: list[str] | None, expected: RolePd | None
) -> None:
    assert role_pd(make_role(command, args)) == expected


@pytest.mark.parametrize("name", ["prefill", "decode", "prefill-a"])
def test_the_name_alone_gives_no_kind(name: str) -> None:
    assert role_pd(make_role(VLLM, [], name=name)) is None


@pytest.mark.parametrize(
    ("command", "args", "declared", "expected"),
    [
        # A declared kind needs no flags; the protocol comes from the engine, else vllm.
        (VLLM, [], {"kind": "decode"}, RolePd("decode", "vllm")),
        (SGLANG, [], {"kind": "prefill"}, RolePd("prefill", "sglang", 8998)),
        (["mock-engine"], [], {"kind": "prefill"}, RolePd("prefill", "vllm")),
        (["mock-engine"], [], {"kind": "prefill", "protocol": "sglang"}, RolePd("prefill", "sglang", 8998)),
        (
            ["mock-engine"],
            [],
            {"kind": "prefill", "protocol": "sglang", "bootstrapPort": 7000},
            RolePd("prefill", "sglang", 7000),
        ),
        # kv_both plus a declared kind: the declared kind.
        (VLLM, ["--kv-transfer-config", kv_config("kv_both")], {"kind": "decode"}, RolePd("decode", "vllm")),
        # Declared fields win over the flags (validation reports the contradiction).
        (
            VLLM,
            ["--kv-transfer-config", kv_config("kv_producer")],
            {"kind": "decode"},
            RolePd("decode", "vllm"),
        ),
        # A protocol or port without a kind from anywhere: still aggregated.
        (VLLM, [], {"protocol": "vllm"}, None),
        # The kind from the flags, the port declared.
        (
            SGLANG,
            ["--disaggregation-mode", "prefill"],
            {"bootstrapPort": 9000},
            RolePd("prefill", "sglang", 9000),
        ),
        # A bootstrap port means nothing to a decode role or to vLLM.
        (SGLANG, ["--disaggregation-mode", "decode"], {"bootstrapPort": 9000}, RolePd("decode", "sglang")),
        (VLLM, [], {"kind": "prefill", "bootstrapPort": 9000}, RolePd("prefill", "vllm")),
    ],
)
def test_declared_fields(
    command: list[str], args: list[str], declared: Spec, expected: RolePd | None
) -> None:
    assert role_pd(make_role(command, args, declared)) == expected


def test_kind_inside_a_shell_script() -> None:
    spec = pd_specs.vllm_nixl()
    assert [role_pd(r) for r in _roles(spec)] == [RolePd("prefill", "vllm"), RolePd("decode", "vllm")]


def test_kind_after_a_launcher_in_the_same_script() -> None:
    spec = pd_specs.vllm_multinode()
    assert [role_pd(r) for r in _roles(spec)] == [RolePd("prefill", "vllm"), RolePd("decode", "vllm")]


def test_kind_from_the_engine_container_after_a_sidecar() -> None:
    spec = pd_specs.sidecar_first()
    flags = engine_flags(_roles(spec)[0].entry_template)
    assert (flags.container, flags.flag_key, flags.kind) == (1, "args", "prefill")
    assert [role_pd(r) for r in _roles(spec)] == [RolePd("prefill", "vllm"), RolePd("decode", "vllm")]


def test_sglang_flags_as_an_argument_list() -> None:
    spec = pd_specs.sglang()
    assert [role_pd(r) for r in _roles(spec)] == [
        RolePd("prefill", "sglang", 8998),
        RolePd("decode", "sglang"),
    ]


def test_roles_named_for_a_side_without_flags_are_aggregated() -> None:
    assert [role_pd(r) for r in _roles(pd_specs.named_only())] == [None, None]


def test_where_the_flags_were_found() -> None:
    shell = engine_flags(_roles(pd_specs.vllm_nixl())[0].entry_template)
    assert (shell.container, shell.flag_key, shell.engine, shell.kv_role) == (
        0,
        "args",
        "vllm",
        "kv_producer",
    )
    in_command = PodTemplate.model_validate(
        {
            "spec": {
                "containers": [{"name": "c", "image": "x", "command": [*VLLM, "--kv-transfer-config", "{}"]}]
            }
        }
    )
    assert engine_flags(in_command).flag_key == "command"


@pytest.mark.parametrize(
    ("config", "problem", "refused"),
    [
        ("not json", "is not JSON, so the engine would refuse it", True),
        ("[1]", "is not a JSON object, so the engine would refuse it", True),
        (
            '{"kv_role":"${ROLE}"}',
            "uses shell variables, so its kv_role is not known before the pod runs",
            False,
        ),
    ],
)
def test_unreadable_kv_transfer_config(config: str, problem: str, refused: bool) -> None:
    flags = engine_flags(make_role(VLLM, ["--kv-transfer-config", config]).entry_template)
    assert (flags.problem, flags.engine_refuses, flags.kind) == (problem, refused, None)


@pytest.mark.parametrize(
    ("command", "engine"),
    [
        (["vllm", "serve", "m"], "vllm"),
        (["/usr/local/bin/vllm", "serve", "m"], "vllm"),
        (["python3", "-m", "vllm.entrypoints.openai.api_server"], "vllm"),
        (["python3", "-m", "sglang.launch_server"], "sglang"),
        (["sglang", "serve"], "sglang"),
        (["phalanx", "sim", "--port", "1"], "sim"),
        (["python", "-m", "phalanx.sim"], "sim"),
        (["vllm", "bench"], None),
        (["bash", "/opt/ray-cluster.sh"], None),
        ([], None),
    ],
)
def test_command_engine(command: list[str], engine: str | None) -> None:
    assert command_engine(command) == engine


@pytest.mark.parametrize(
    ("container", "commands"),
    [
        ({"command": ["vllm", "serve"], "args": ["m"]}, [["vllm", "serve", "m"]]),
        ({"command": ["sh", "-c"], "args": ["a 'b c' && d e\nf"]}, [["a", "b c"], ["d", "e"], ["f"]]),
        ({"command": ["bash", "-lc", "x \\\n y"]}, [["x", "y"]]),
        ({"command": ["sh", "script.sh"]}, [["sh", "script.sh"]]),
        ({"command": ["sh", "-c", "unbalanced 'quote"]}, []),
        ({"command": "not a list"}, [[]]),
    ],
)
def test_container_commands(container: Spec, commands: list[list[str]]) -> None:
    assert container_commands(container) == commands


@pytest.mark.parametrize(
    ("command", "values"),
    [
        (["--a", "1", "2", "--b"], ["1", "2"]),
        (["--a=1", "--a", "3"], ["3"]),
        (["--a_b", "1"], None),
        (["--x"], None),
        (["--a"], []),
    ],
)
def test_flag_values(command: list[str], values: list[str] | None) -> None:
    assert flag_values(command, "--a") == values


@pytest.mark.parametrize(
    ("pairing", "keys"),
    [
        (None, ["qwen-pd"] * 3),
        ("ModelServing", ["qwen-pd"] * 3),
        ("ServingGroup", ["qwen-pd-0", "qwen-pd-1", "qwen-pd-2"]),
    ],
)
def test_pair_key(pairing: str | None, keys: list[str]) -> None:
    spec = pd_specs.vllm_nixl()
    if pairing is not None:
        spec["spec"]["template"]["disaggregation"] = {"pairing": pairing}
    ms = _model(spec)
    assert [pair_key(ms, group) for group in range(3)] == keys


def _model(spec: Spec) -> ModelServing:
    ms, problems = parse_resource(spec)
    assert isinstance(ms, ModelServing), [p.render() for p in problems]
    return ms


def _roles(spec: Spec) -> list[Role]:
    return list(_model(spec).spec.template.roles)
