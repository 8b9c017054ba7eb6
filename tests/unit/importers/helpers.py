"""Shared helpers of the importer tests: run a conversion, render its pods, run the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from phalanx.api import ModelServing, parse_resource
from phalanx.api.yamlfile import parse_yaml
from phalanx.controller.desired import group_objects
from phalanx.importers import ImportResult, import_documents


def imported(text: str, **shape: Any) -> ImportResult:
    return import_documents([document.data for document in parse_yaml(text)], shape or None)


def only_resource(result: ImportResult) -> dict[str, Any]:
    (item,) = result.converted
    assert item.obj is not None
    return item.obj


def serving(obj: dict[str, Any]) -> ModelServing:
    resource, problems = parse_resource(obj)
    errors = [p.render() for p in problems if p.severity == "error"]
    assert not errors, errors
    assert isinstance(resource, ModelServing)
    return resource


def group_pods(ms: ModelServing, group: int = 0) -> list[dict[str, Any]]:
    return [o for o in group_objects(ms, group) if o["kind"] == "Pod"]


def gang_min_member(ms: ModelServing, group: int = 0) -> int | None:
    gangs = [o for o in group_objects(ms, group) if o["kind"] == "PodGroup"]
    return gangs[0]["spec"]["minMember"] if gangs else None


def notes_text(result: ImportResult) -> str:
    return "\n".join(note.text for item in result.items for note in item.notes)


def phalanx_import(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "input.yaml"
    source.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "phalanx", "import", "-f", str(source), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
