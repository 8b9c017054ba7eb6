"""`phalanx sim` accepts vLLM's --data-parallel-size, which ModelDeployment recipes render for DP layouts."""

from __future__ import annotations

import pytest

from phalanx.sim.config import parse_config


def test_data_parallel_size_from_a_vllm_command_line_is_accepted() -> None:
    argv = ["--served-model-name", "m", "--tensor-parallel-size", "2", "--data-parallel-size", "4"]
    cfg = parse_config(argv, {})
    assert (cfg.data_parallel_size, cfg.tensor_parallel_size) == (4, 2)
    assert parse_config(["--served-model-name", "m"], {}).data_parallel_size == 1


def test_data_parallel_size_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--served-model-name", "m", "--data-parallel-size", "0"], {})
    assert "--data-parallel-size" in capsys.readouterr().err
