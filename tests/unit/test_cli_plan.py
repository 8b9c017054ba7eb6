"""`phalanx plan` as a user runs it: options and their help, models from config.json, layouts, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from phalanx.cli import app

CONFIGS = Path(__file__).parent / "planner" / "configs"
runner = CliRunner()


def plan(*args: str) -> Any:
    return runner.invoke(app, ["plan", *args])


def plan_json(*args: str) -> dict[str, Any]:
    result = plan(*args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_every_plan_option_says_what_it_does() -> None:
    command = typer.main.get_command(app).commands["plan"]  # type: ignore[attr-defined]
    options = [param for param in command.params if param.opts[0].startswith("--")]
    assert len(options) >= 15
    missing = [param.opts[0] for param in options if not (param.help or "").strip()]
    assert missing == []


def test_help_lists_the_layout_pins_and_the_config_option() -> None:
    result = plan("--help")
    assert result.exit_code == 0
    for option in ("--model-config", "--tensor-parallel-size", "--data-parallel-size", "--instance-type"):
        assert option in result.stdout


def test_a_small_model_on_a_big_node_is_served_by_replicas() -> None:
    data = plan_json("--model", "llama-3.1-8b-instruct", "--instance-type", "Standard_NC96ads_A100_v4")
    assert (data["data_parallel_size"], data["tensor_parallel_size"], data["pipeline_parallel_size"]) == (
        4,
        1,
        1,
    )
    layouts = {entry["layout"]: entry for entry in data["layouts"]}
    assert set(layouts) == {"DP 4 x TP 1", "DP 2 x TP 2", "TP 4"}
    best = layouts["DP 4 x TP 1"]["throughput"]["tokens_per_second_per_node"]
    assert all(entry["throughput"]["tokens_per_second_per_node"] < best for entry in data["layouts"][1:])
    assert data["arithmetic"][-1].startswith("chosen: DP 4 x TP 1, ")


def test_pinned_layout_is_used_as_given() -> None:
    data = plan_json(
        "-m", "llama-3.1-8b-instruct", "-t", "Standard_NC96ads_A100_v4", "--data-parallel-size", "1"
    )
    assert (data["data_parallel_size"], data["tensor_parallel_size"]) == (1, 4)
    data = plan_json("-m", "llama-3.1-8b-instruct", "-t", "p5.48xlarge", "--tensor-parallel-size", "4")
    assert (data["data_parallel_size"], data["tensor_parallel_size"]) == (2, 4)


def test_a_wrong_pin_says_which_flag_to_change() -> None:
    result = plan("-m", "llama-3.1-8b-instruct", "-t", "p5.48xlarge", "--data-parallel-size", "3")
    assert result.exit_code == 1
    assert "error: --data-parallel-size 3 does not divide the 8 GPUs of a node" in result.stderr
    assert "use one of 1, 2, 4, 8" in result.stderr


def test_plan_from_a_config_file_or_a_model_directory(tmp_path: Path) -> None:
    from_file = plan_json("--model-config", str(CONFIGS / "gpt-oss-120b.json"), "-t", "p5.48xlarge")
    assert (from_file["model"], from_file["dtype"]) == ("gpt-oss-120b", "mxfp4")  # named after the file
    model_dir = tmp_path / "acme-llama"
    model_dir.mkdir()
    config = json.loads((CONFIGS / "llama-3.1-8b.json").read_text()) | {"_name_or_path": "acme/llama-8b"}
    (model_dir / "config.json").write_text(json.dumps(config))
    from_dir = plan_json("--model-config", str(model_dir), "-t", "p5.48xlarge")
    assert from_dir["hf_id"] == "acme/llama-8b"  # the id the config was saved from
    named = plan_json("--model-config", str(model_dir), "--model", "mine/llama", "-t", "p5.48xlarge")
    assert named["hf_id"] == "mine/llama"
    catalog = plan_json("-m", "llama-3.1-8b-instruct", "-t", "p5.48xlarge")
    assert from_dir["memory"] == catalog["memory"]  # the same architecture, the same plan


def test_config_problems_are_listed_at_once_with_their_lines(tmp_path: Path) -> None:
    config = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    config["num_hidden_layers"] = "32"
    del config["vocab_size"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, indent=2))
    result = plan("--model-config", str(path), "-t", "p5.48xlarge")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    layers_line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "num_hidden_layers" in text
    )
    assert (
        f"{path}:{layers_line}:3: error: num_hidden_layers:"
        " must be a whole number from 1 to 10000 (decoder layers) (got '32');"
        f" fix: write num_hidden_layers as a number, as in the model's config.json"
    ) in lines
    assert any(
        line.startswith(f"{path}: error: vocab_size: is missing; fix: add vocab_size") for line in lines
    )
    assert f"{path}: 2 errors" in lines


def test_a_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "hidden_size": 4096,\n}\n')
    result = plan("--model-config", str(path), "-t", "p5.48xlarge")
    assert result.exit_code == 1
    assert f"{path}:3:1: error: <document>: is not valid JSON" in result.stderr  # the comma before `}`


def test_an_unknown_model_points_to_the_list_and_to_config_files() -> None:
    result = plan("-m", "llama-3.3-70b", "-t", "p5.48xlarge")
    assert result.exit_code == 1
    assert "llama-3.3-70b-instruct" in result.stderr
    assert "--model-config" in result.stderr


def test_a_planning_error_speaks_in_flags() -> None:
    result = plan("-m", "llama-3.1-8b-instruct", "-t", "p5.48xlarge", "--max-model-len", "999999")
    assert result.exit_code == 1
    assert "--max-model-len 999999 exceeds the 131072-token context" in result.stderr
    assert "set --max-model-len to at most 131072" in result.stderr


def test_kaito_preset_names_plan() -> None:
    data = plan_json("-m", "gemma-3-27b-instruct", "-t", "Standard_NC80adis_H100_v5")
    assert data["model"] == "gemma-3-27b-it"


def test_list_shows_the_catalog_with_bandwidths() -> None:
    result = plan("--list")
    assert result.exit_code == 0
    for text in (
        "gpt-oss-120b",
        "qwen3-30b-a3b",
        "gemma-3-27b-it",
        "phi-4-mini-instruct",
        "mxfp4",
        "3,350 GB/s",
    ):
        assert text in result.stdout


@pytest.mark.skipif(shutil.which("false") is None, reason="needs a POSIX userland")
def test_the_installed_command_plans_a_config_file() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "phalanx",
            "plan",
            "--model-config",
            str(CONFIGS / "deepseek-v3.json"),
            "-t",
            "p5.48xlarge",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "TP 8 x PP 2" in result.stdout
    assert "Traceback" not in result.stderr
