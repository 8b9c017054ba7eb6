"""The project's documents stand on their own: no reference to notes outside the repository
(`shared/...`), to the machine they were written on (`/work/...`), or a link that leaves the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCUMENTS = sorted(
    [ROOT / "README.md", *(p for top in ("docs", "bench", "hack") for p in (ROOT / top).rglob("*.md"))]
)
OUTSIDE = {
    "a `shared/` path (notes outside the repository)": re.compile(r"(?<![\w./-])(?:\.\./)*shared/"),
    "a path on the machine it was written on": re.compile(r"(?<![\w.~-])/work\b"),
}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def problems(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    where = path.relative_to(root)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for what, pattern in OUTSIDE.items():
            if pattern.search(line):
                found.append(f"{where}:{number}: {what}: {line.strip()}")
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor on the same page
            if not (path.parent / target.split("#")[0]).resolve().is_relative_to(root.resolve()):
                found.append(f"{where}:{number}: a link out of the repository: {target}")
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_document_refers_to_nothing_outside_the_repository(path: Path) -> None:
    assert problems(path) == []


def test_the_check_sees_what_it_must(tmp_path: Path) -> None:
    assert "docs/architecture.md" in {str(p.relative_to(ROOT)) for p in DOCUMENTS}
    assert any(str(p.relative_to(ROOT)).startswith("bench/") for p in DOCUMENTS)
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text(
        "See `shared/DESIGN.md`.\n"
        "As in ../shared/reference/x.md.\n"
        "cd /work/main\n"
        "[design](../../outside.md)\n"
        "[api](api.md) [web](https://example.com/shared/x) docs/shared/x kube-shared/ ~/work /workspace\n"
    )
    assert [p.split(": ")[0] for p in problems(page, tmp_path)] == [
        "docs/page.md:1",
        "docs/page.md:2",
        "docs/page.md:3",
        "docs/page.md:4",
    ]
