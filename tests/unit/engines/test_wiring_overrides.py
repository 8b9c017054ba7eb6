"""engineArgs that would undo how a recipe wires its pods (port, bind address, served name, node joins,
PD side) are refused, in full and abbreviated, since both engines' parsers take a unique prefix."""

from __future__ import annotations

import pytest

from phalanx.engines import RECIPES, sglang, sim, vllm
from phalanx.engines.recipe import WIRED_BY, PdRole, overridden_flags, wiring_overrides
from tests.unit.engines.test_pd_recipes import inputs as pd_inputs
from tests.unit.engines.test_recipes import inputs

WIRED = ("--port", "--host", "--served-model-name", "--kv-transfer-config")


@pytest.mark.parametrize(
    ("engine_args", "refused"),
    [
        (("--port", "9000"), [(0, "--port")]),
        (("--port=9000",), [(0, "--port=9000")]),
        (("--po", "9000"), [(0, "--po")]),  # argparse: --po is --port
        (("--enable-chunked-prefill", "--por=9001"), [(1, "--por=9001")]),
        (("--host", "127.0.0.1"), [(0, "--host")]),
        (("--served-model", "other"), [(0, "--served-model")]),
        (("--kv-transfer", "{}"), [(0, "--kv-transfer")]),
        (("--kv_transfer_config", "{}"), [(0, "--kv_transfer_config")]),  # vLLM reads _ as -
        # Restating what Phalanx wires keeps the wiring.
        (("--port", "8000"), []),
        (("--host", "0.0.0.0"), []),
        (("--host=::",), []),
        # Flags that only start like a wired one, and values.
        (("--max-num-seqs", "128", "--enable-prefix-caching"), []),
        (("--override-generation-config", "--port"), [(1, "--port")]),
    ],
)
def test_wiring_overrides(engine_args: tuple[str, ...], refused: list[tuple[int, str]]) -> None:
    assert [(p.index, p.token) for p in wiring_overrides(engine_args, WIRED)] == refused


def test_a_refusal_names_the_flag_the_abbreviation_stands_for_and_the_fix() -> None:
    (problem,) = wiring_overrides(("--po", "9000"), WIRED)
    assert "--port (--po 9000, an abbreviation the engine takes as --port)" in problem.message
    assert "container port named http (8000)" in problem.message
    assert problem.fix == "remove it: the engine serves on port 8000 (container port http)"


@pytest.mark.parametrize("engine", ["vllm", "sglang", "sim"])
def test_every_recipe_refuses_a_port_the_probes_do_not_use(engine: str) -> None:
    recipe = RECIPES[engine](inputs(engine_args=("--port", "9000")))
    assert [(p.index, p.token) for p in recipe.refused] == [(0, "--port")]


@pytest.mark.parametrize("launcher", ["ray", "native"])
def test_vllm_refuses_node_wiring_flags(launcher: str) -> None:
    args = ("--nnodes", "4", "--node-rank=1", "--master-addr", "x", "--headless")
    recipe = RECIPES["vllm"](inputs(launcher=launcher, engine_args=args))
    assert [p.token for p in recipe.refused] == ["--nnodes", "--node-rank=1", "--master-addr", "--headless"]


def test_sglang_pd_roles_refuse_their_pd_flags_abbreviated() -> None:
    pd = PdRole(kind="prefill", connector="mooncake")
    args = (
        "--disaggregation-bootstrap",
        "9000",
        "--disaggregation-m",
        "decode",
        "--disaggregation-transfer",
        "nixl",
    )
    recipe = RECIPES["sglang"](pd_inputs(pd, engine_args=args))
    assert [p.token for p in recipe.refused] == list(args[::2])


def test_aggregated_vllm_may_set_its_own_kv_transfer_config() -> None:
    # A KV connector for offloading (kv_both) is the user's choice when no PD side depends on it.
    args = ("--kv-transfer-config", '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}')
    recipe = RECIPES["vllm"](inputs(engine_args=args))
    assert recipe.refused == ()
    assert any("--kv-transfer-config" in note for note in recipe.notes)


@pytest.mark.parametrize(
    ("engine_args", "noted"),
    [
        (("--tensor-parallel-size", "4"), ["--tensor-parallel-size"]),
        (("--tensor-parallel", "4"), ["--tensor-parallel-size"]),  # abbreviated, as argparse reads it
        (("-tp", "4"), ["-tp"]),
        (("--gpu-memory-utilization=0.5",), ["--gpu-memory-utilization"]),
        (("--max-num-seqs", "8"), []),
    ],
)
def test_overridden_planned_flags_are_found_abbreviated_too(
    engine_args: tuple[str, ...], noted: list[str]
) -> None:
    planned = {"--tensor-parallel-size", "-tp", "--gpu-memory-utilization", "--max-model-len"}
    assert overridden_flags(engine_args, planned) == noted


@pytest.mark.parametrize("engine", ["vllm", "sglang", "sim"])
def test_every_wired_flag_says_what_relies_on_it_and_is_refused_with_a_fix(engine: str) -> None:
    module = {"vllm": vllm, "sglang": sglang, "sim": sim}[engine]
    for flag in module._WIRED + module._PD_WIRED:
        assert flag in WIRED_BY
        pd = PdRole(kind="prefill", connector="mooncake" if engine == "sglang" else "nixl")
        (problem,) = RECIPES[engine](pd_inputs(pd, engine_args=(flag, "x"))).refused
        assert problem.fix.startswith("remove it")


@pytest.mark.parametrize(
    ("engine_args", "noted"),
    [
        # SGLang's long names for the sizes it is planned with (its parser takes both spellings).
        (("--tensor-parallel-size", "4"), ["--tensor-parallel-size"]),
        (("--pipeline-parallel-size", "1"), ["--pipeline-parallel-size"]),
        (("--data-parallel-size", "2"), ["--data-parallel-size"]),
        (("--tp-size", "4"), ["--tp-size"]),
        (("--max-running-requests", "8"), []),
    ],
)
def test_sglang_notes_its_long_parallel_flags(engine_args: tuple[str, ...], noted: list[str]) -> None:
    recipe = RECIPES["sglang"](inputs(engine_args=engine_args))
    assert recipe.notes == ((f"engineArgs override planned flags {', '.join(noted)}",) if noted else ())


def test_sglang_refuses_its_other_name_for_the_join_address() -> None:
    recipe = RECIPES["sglang"](inputs(engine_args=("--nccl-init-addr", "10.0.0.9:20000")))
    (problem,) = recipe.refused
    assert problem.token == "--nccl-init-addr"
    assert "the worker pods join the entry pod at this address" in problem.message
