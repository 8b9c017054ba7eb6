"""What parse_vllm.py and parse_sglang.py share; runs inside an engine's venv (no Phalanx there).

Each parse script reads IN.json ([{"argv": [...], "env": {...}}, ...]), checks every item with its
engine's own parser, and writes one result per item to OUT.json: {"ok", "stage", "error", "shown"}.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# No network here: a model lookup must fail fast instead of retrying a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The engines' cross-flag checks need a real config.json; a small Llama stands in for the served
# model, as none of the checks we run depend on the model's size.
STAND_IN_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "num_hidden_layers": 16,
    "max_position_embeddings": 131072,
    "vocab_size": 32000,
    "rms_norm_eps": 1e-5,
    "torch_dtype": "bfloat16",
    "rope_theta": 500000.0,
}

# The same model in Mistral's own format (params.json), for --config-format mistral.
STAND_IN_PARAMS = {
    "dim": 1024,
    "hidden_dim": 4096,
    "n_heads": 16,
    "n_kv_heads": 8,
    "n_layers": 16,
    "head_dim": 64,
    "norm_eps": 1e-5,
    "vocab_size": 32000,
    "rope_theta": 500000.0,
    "max_position_embeddings": 131072,
}

Result = dict[str, Any]


def new_result() -> Result:
    return {"ok": False, "stage": "parse", "error": "", "shown": {}}


@contextlib.contextmanager
def pod_env(env: dict[str, str]) -> Iterator[None]:
    """The pod's env for the duration of one check (engines read some settings from it)."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_or_usage_error(parse: Callable[[], Any], result: Result) -> Any:
    """argparse prints its error and exits; keep the last line of it as the result's error."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parse()
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        start = next((i for i, line in enumerate(lines) if ": error:" in line), max(len(lines) - 1, 0))
        kept = [
            line.strip() for line in lines[start:] if not line.strip().startswith("For further information")
        ]
        result["error"] = " ".join(kept)[:400] or "argparse exit"
        return None


def require_known_env(names: list[str], prefix: str, known: set[str] | dict[str, Any], engine: str) -> None:
    """A misspelt engine env var is silently ignored by the engine: say so instead."""
    unknown = sorted(n for n in names if n.startswith(prefix) and n not in known)
    if unknown:
        raise ValueError(f"env names {engine} does not read: {', '.join(unknown)}")


def check_item(
    item: dict[str, Any],
    parse: Callable[[list[str]], Any],
    shown: Callable[[Any], dict[str, Any]],
    stages: Callable[[Any], Iterator[str]],
) -> Result:
    """Parses item's argv under its env, then runs `stages(parsed)`: a generator that yields each
    stage's name before doing it, so that a failure is reported with the stage it happened in."""
    result = new_result()
    with pod_env(item["env"]):
        parsed = parse_or_usage_error(lambda: parse(list(item["argv"])), result)
        if parsed is None:
            return result
        result["shown"] = shown(parsed)
        try:
            for stage in stages(parsed):
                result["stage"] = stage
            result["stage"] += " done"
            result["ok"] = True
        except Exception as error:  # every rejection is reported, none stops the run
            # Every line, collapsed: pydantic puts the reason on the lines after its first.
            result["error"] = " ".join(f"{type(error).__name__}: {error}".split())[:400]
            result["trace"] = traceback.format_exc()[-2000:]
    return result


def run(check: Callable[[dict[str, Any], Path], Result]) -> None:
    """python parse_ENGINE.py IN.json OUT.json: check(item, stand_in_model_dir) for every item."""
    request, answer = Path(sys.argv[1]), Path(sys.argv[2])
    items = json.loads(request.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        (model_dir / "config.json").write_text(json.dumps(STAND_IN_CONFIG))
        (model_dir / "params.json").write_text(json.dumps(STAND_IN_PARAMS))
        results = [check(item, model_dir) for item in items]
    answer.write_text(json.dumps(results))
