"""A model's config.json file -> its architecture, with every problem located at its line in the file.

`phalanx plan --model-config` reads the file this way; a ModelDeployment carries the same content under
spec.model.config, where problems are located in the YAML file instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phalanx.api.errors import FieldError, SpecError
from phalanx.api.yamlfile import Document, parse_yaml
from phalanx.compiler.resolve import config_problem
from phalanx.planner.hf_config import architecture_from_config
from phalanx.planner.types import ModelArchitecture

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    """What a config.json file gave: the model (None on any error) and every problem, located."""

    model: ModelArchitecture | None
    problems: list[FieldError]


def config_file(path: Path) -> Path:
    """The config.json of `path`: the file itself, or the one inside a model directory."""
    return path / CONFIG_FILE if path.is_dir() else path


def model_name(data: Any, path: Path) -> str:
    """A name for a model known by its config.json: the id it was saved from, else its directory."""
    saved = data.get("_name_or_path") if isinstance(data, dict) else None
    if isinstance(saved, str) and saved.strip():
        return saved.strip()
    return path.resolve().parent.name if path.name == CONFIG_FILE else path.stem


def _positions(text: str) -> Document | None:
    """Where each key sits: JSON is YAML, so the YAML reader's marks serve (None if it cannot read it)."""
    try:
        documents = parse_yaml(text)
    except SpecError:
        return None
    return documents[0] if documents else None


def read_model_config(text: str, path: Path, name: str | None = None) -> ModelConfig:
    """Parse the text of the config.json at `path`; `name` (else the saved id) names the model."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = FieldError(
            (),
            f"is not valid JSON: {exc.msg}",
            fix="give the model's config.json as published",
            line=exc.lineno,
            column=exc.colno,
        )
        return ModelConfig(None, [problem])
    parsed = architecture_from_config(data, name or model_name(data, path))
    document = _positions(text)
    problems = [config_problem(problem, prefix=()) for problem in parsed.problems]
    located = [document.locate(p) for p in problems] if document is not None else problems
    return ModelConfig(parsed.model, located)
