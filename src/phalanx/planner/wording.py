"""The planner names request fields in its own snake_case; each caller words them its own way.

`phalanx plan` says `--max-model-len`, a ModelDeployment error says `maxModelLen`: `reword` swaps the
planner's names in a message or fix for the caller's, leaving every other word alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# The PlanRequest fields the planner's messages mention by name.
FIELD_NAMES = (
    "max_model_len",
    "max_nodes",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "data_parallel_size",
)


def reword(text: str, names: Mapping[str, str]) -> str:
    """`text` with every whole-word occurrence of a key of `names` replaced by its value."""
    if not names:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")\b")
    return pattern.sub(lambda match: names[match[1]], text)
