"""The engine's batch size read from the argv Phalanx composes for a pod."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.autoscale.observe.batch import max_running


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"containers": list(containers)}}


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"command": ["vllm", "serve"], "args": ["m", "--max-num-seqs", "128"]}, 128),
        ({"command": ["vllm", "serve", "m", "--max_num_seqs=96"]}, 96),
        ({"command": ["python3", "-m", "vllm.entrypoints.openai.api_server", "--max-num-seqs", "8"]}, 8),
        ({"command": ["python3", "-m", "sglang.launch_server", "--max-running-requests", "48"]}, 48),
        ({"command": ["phalanx", "sim"], "args": ["--max-num-seqs", "32"]}, 32),
        ({"command": ["phalanx", "sim"]}, 256),  # the simulator's default
        # vLLM's default depends on the GPU's memory, SGLang's on its KV cache: not known.
        ({"command": ["vllm", "serve", "m"]}, None),
        ({"command": ["python3", "-m", "sglang.launch_server"]}, None),
        # SGLang has no --max-num-seqs: the other engine's flag is not read.
        ({"command": ["python3", "-m", "sglang.launch_server", "--max-num-seqs", "48"]}, None),
        ({"command": ["vllm", "serve", "m", "--max-num-seqs", "many"]}, None),
        ({"command": ["vllm", "serve", "m", "--max-num-seqs", "0"]}, None),
        ({"command": ["sleep", "infinity"]}, None),
    ],
)
def test_each_engine_s_flag(container: dict[str, Any], expected: int | None) -> None:
    assert max_running(pod(container)) == expected


def test_a_shell_script_s_engine_command_is_read() -> None:
    script = "ray start --head && vllm serve m --max-num-seqs 512 --tensor-parallel-size 8"
    assert max_running(pod({"command": ["sh", "-c", script]})) == 512


def test_the_first_engine_among_the_containers_counts() -> None:
    sidecar = {"command": ["envoy"]}
    engine = {"command": ["vllm", "serve", "m", "--max-num-seqs", "16"]}
    assert max_running(pod(sidecar, engine)) == 16


@pytest.mark.parametrize(
    "bad", [{}, {"spec": None}, {"spec": {"containers": "x"}}, {"spec": {"containers": ["x"]}}]
)
def test_a_malformed_pod_has_no_batch_size(bad: dict[str, Any]) -> None:
    assert max_running(bad) is None
