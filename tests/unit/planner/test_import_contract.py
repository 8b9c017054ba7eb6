"""The planner sits at the bottom of Phalanx: it may import the standard library and itself, nothing else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import phalanx.planner

PLANNER = Path(phalanx.planner.__file__).parent


def imported_modules(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            modules.append(node.module or "")
    return modules


def test_planner_imports_only_the_standard_library_and_itself() -> None:
    sources = sorted(PLANNER.rglob("*.py"))
    assert len(sources) > 5
    for path in sources:
        for module in imported_modules(path):
            top = module.split(".")[0]
            allowed = module == "phalanx.planner" or module.startswith("phalanx.planner.")
            allowed = allowed or (top != "phalanx" and top in sys.stdlib_module_names) or top == "__future__"
            assert allowed, f"{path.relative_to(PLANNER)} imports {module}"
