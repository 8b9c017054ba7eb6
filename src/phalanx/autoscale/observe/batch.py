"""The engine's batch size (requests it runs at once) from the argv Phalanx composed for a pod."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from phalanx.api.argv import container_commands, flag_values
from phalanx.api.disaggregation import Engine, command_engine

BATCH_FLAG: Final[dict[Engine, str]] = {
    "vllm": "--max-num-seqs",
    "sglang": "--max-running-requests",
    "sim": "--max-num-seqs",
}
# Without the flag: `phalanx sim` runs 256. vLLM's default depends on the GPU's memory (256 or
# 1024), which a pod does not say; SGLang sizes it from its KV cache. Those are unknown.
DEFAULT_BATCH: Final[dict[Engine, int | None]] = {"vllm": None, "sglang": None, "sim": 256}


def max_running(pod: Mapping[str, Any]) -> int | None:
    """The batch size of the first engine command among the pod's containers (in order, each
    command of an `sh -c` script included); None when no engine is found or its size is unknown."""
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    for container in containers if isinstance(containers, list) else []:
        if not isinstance(container, Mapping):
            continue
        for command in container_commands(container):
            engine = command_engine(command)
            if engine is None:
                continue
            values = flag_values(command, BATCH_FLAG[engine])
            return _positive(values[0]) if values else DEFAULT_BATCH[engine]
    return None


def _positive(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None
