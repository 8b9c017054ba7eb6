from __future__ import annotations

import pytest

from phalanx.sim.config import parse_config
from phalanx.sim.main import main


def test_defaults_and_env() -> None:
    cfg = parse_config(["--served-model-name", "m"], {"POD_IP": "127.0.0.5"})
    assert cfg.host == "127.0.0.5"
    assert cfg.model == "m"
    assert cfg.is_entry and cfg.group_size == 1
    assert cfg.num_gpu_blocks == 131072 // 16
    assert cfg.inter_token_latency == pytest.approx(0.012)
    assert parse_config(["--served-model-name", "m"], {}).host == "0.0.0.0"


def test_zero_latency_and_block_override() -> None:
    cfg = parse_config(["--served-model-name", "m", "--zero-latency", "--num-gpu-blocks", "300"], {})
    assert (cfg.prefill_overhead, cfg.prefill_time_per_token, cfg.inter_token_latency) == (0, 0, 0)
    assert cfg.num_gpu_blocks == 300


def test_worker_env() -> None:
    env = {"WORKER_INDEX": "1", "GROUP_SIZE": "2", "ENTRY_ADDRESS": "10.0.0.1"}
    cfg = parse_config(["--served-model-name", "m"], env)
    assert not cfg.is_entry and cfg.entry_address == "10.0.0.1"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--served-model-name", "m", "--enforce-eager"], {}),
        (["--served-model-name", "m", "--max-model"], {}),
        ([], {}),
        (["--served-model-name", "m", "--max-model-len", "0"], {}),
        (["--served-model-name", "m", "--kv-cache-tokens", "100"], {}),
        (["--served-model-name", "m"], {"WORKER_INDEX": "1", "GROUP_SIZE": "2"}),
        (["--served-model-name", "m"], {"WORKER_INDEX": "2", "GROUP_SIZE": "2", "ENTRY_ADDRESS": "x"}),
        (["--served-model-name", "m"], {"GROUP_SIZE": "zero"}),
        (["--served-model-name", "m", "--max-body-mib", "0"], {}),
        (["--served-model-name", "m", "--max-body-mib", "inf"], {}),
    ],
)
def test_rejected(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(argv, env)
    assert info.value.code == 2
    assert "phalanx sim" in capsys.readouterr().err


def test_main_rejects_unknown_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--served-model-name", "m", "--trust-remote-code"])
    assert "unrecognized arguments: --trust-remote-code" in capsys.readouterr().err


def test_the_body_limit_follows_the_context_unless_set() -> None:
    def limit(*flags: str) -> int:
        argv = ["--served-model-name", "m", "--kv-cache-tokens", "1048576", *flags]
        return parse_config(argv, {}).max_body_bytes

    assert limit() == 8 * 2**20  # 4096 tokens: the 8 MiB floor
    assert limit("--max-model-len", "131072") == 256 * 131072  # 32 MiB
    assert limit("--max-body-mib", "0.5") == 2**19
