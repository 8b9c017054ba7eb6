"""spec.engineArgs that would undo the pods' wiring are errors on the item, with the fix: the port the
probes and the router use, the served name, and a PD role's side, in full or abbreviated."""

from __future__ import annotations

import pytest

from phalanx.api import FieldError, SpecError
from phalanx.compiler import compile_deployment
from tests.unit.compiler.test_pd_deployment import SHAPE, all_problems, deployment, spec

PD = "disaggregation: {connector: nixl, prefill: {replicas: 1}, decode: {replicas: 1}}"
SGLANG_PD = "disaggregation: {connector: mooncake, prefill: {replicas: 1}, decode: {replicas: 1}}"


def errors(*lines: str) -> list[FieldError]:
    return [p for p in all_problems(spec(*SHAPE, *lines)) if p.severity == "error"]


@pytest.mark.parametrize("engine", ["vllm", "sglang", "sim"])
def test_a_port_other_than_http_is_an_error_on_the_item(engine: str) -> None:
    # Before: it compiled with no warning and the pod never became ready (probes on port http, 8000).
    (problem,) = errors(f"engine: {engine}", 'engineArgs: ["--enable-x", "--port", "9000"]')
    assert (problem.field, problem.value) == ("spec.engineArgs[1]", "--port")
    assert "container port named http (8000)" in problem.message
    assert problem.fix == "remove it: the engine serves on port 8000 (container port http)"
    assert problem.line == 10  # the engineArgs line (SHAPE is lines 6 to 8)


def test_the_same_port_and_an_all_interfaces_bind_pass() -> None:
    assert errors('engineArgs: ["--port", "8000", "--host=0.0.0.0"]') == []


@pytest.mark.parametrize(
    ("engine", "disaggregation", "engine_args", "flag"),
    [
        ("vllm", PD, '["--kv-transfer", "{}"]', "--kv-transfer-config"),
        ("vllm", PD, '["--kv-transfer-config", "{}"]', "--kv-transfer-config"),
        ("sim", PD, '["--kv_transfer_config={}"]', "--kv-transfer-config"),
        ("sglang", SGLANG_PD, '["--disaggregation-bootstrap", "9000"]', "--disaggregation-bootstrap-port"),
        ("sglang", SGLANG_PD, '["--disaggregation-m", "decode"]', "--disaggregation-mode"),
        ("vllm", PD, '["--served-model-name", "x"]', "--served-model-name"),
    ],
)
def test_pd_wiring_flags_are_errors_once_even_abbreviated(
    engine: str, disaggregation: str, engine_args: str, flag: str
) -> None:
    # Before: the abbreviations compiled and the role ran as the other side, or on another bootstrap port.
    (problem,) = errors(f"engine: {engine}", disaggregation, f"engineArgs: {engine_args}")
    assert problem.field == "spec.engineArgs[0]"
    assert f"sets {flag} (" in problem.message


def test_compile_deployment_raises_with_the_refusal() -> None:
    with pytest.raises(SpecError) as raised:
        compile_deployment(deployment(engineArgs=["--port", "9000"]))
    assert [p.field for p in raised.value.errors] == ["spec.engineArgs[0]"]
