"""Every `phalanx ...` command line our messages and docs suggest must exist: the command and its options.

A fix that says "see phalanx plan --list-models" when the option is `--list` sends users nowhere. This test
reads every mention of `phalanx <command> [options]` in the source (messages, docstrings, comments), in
docs/*.md and in README.md, and checks each against the real command line: the typer app, and for
`phalanx sim` (which has its own parser, with vLLM's flag names) that parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from phalanx.cli import app
from phalanx.sim.config import build_parser

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "src" / "phalanx").rglob("*.py"))
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

# `phalanx` then a word that could be a command: not a path, module or file name (`deploy/helm/phalanx`,
# `phalanx.planner`), and not Python's `from phalanx import ...`.
MENTION = re.compile(r"(?<![\w/.@-])phalanx ([a-z][a-z-]*)(?![\w/.-])([^\n`'\"|;#)\]]*)")
OPTION = re.compile(r"^(-{1,2}[A-Za-z][\w-]*)")


@dataclass(frozen=True)
class Mention:
    where: str
    command: str
    options: tuple[str, ...]


def mentions(text: str, name: str) -> Iterator[Mention]:
    """The command lines `text` (the file `name`) suggests."""
    for match in MENTION.finditer(text):
        before = text[max(0, match.start() - 5) : match.start()]
        if before.endswith(("from ", "mport ")):
            continue
        line = text.count("\n", 0, match.start()) + 1
        options = tuple(found[1] for word in match[2].split() if (found := OPTION.match(word)))
        yield Mention(f"{name}:{line}", match[1], options)


def known_options(command: str) -> set[str]:
    if command == "sim":
        return set(build_parser()._option_string_actions) | {"--help"}
    found = _group_commands()[command]
    names = {"--help"}
    for param in found.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def _group_commands() -> dict[str, Any]:
    """The app's commands by name (typer's own copy of click: its group has `commands`)."""
    commands: dict[str, Any] = typer.main.get_command(app).commands
    return commands


def commands() -> set[str]:
    return set(_group_commands())


ALL = [
    mention
    for path in [*SOURCES, *DOCS]
    for mention in mentions(path.read_text(), str(path.relative_to(ROOT)))
]


def test_the_reader_finds_mentions_in_code_and_docs() -> None:
    places = {mention.where.split("/")[0] for mention in ALL}
    assert {"src", "docs"} <= places
    assert any(m.command == "plan" and "--list" in m.options for m in ALL)
    python_and_helm = "from phalanx import planner\nhelm install phalanx deploy/helm/phalanx\n"
    assert list(mentions(python_and_helm, "x")) == []  # a Python import, a Helm release name


@pytest.mark.parametrize("mention", ALL, ids=lambda m: f"{m.where} {m.command}")
def test_suggested_command_exists(mention: Mention) -> None:
    assert mention.command in commands(), f"{mention.where}: there is no `phalanx {mention.command}`"
    unknown = [option for option in mention.options if option not in known_options(mention.command)]
    assert not unknown, f"{mention.where}: `phalanx {mention.command}` has no option {', '.join(unknown)}"


def test_a_wrong_suggestion_is_caught() -> None:
    text = "Use a catalog name (phalanx plan --list-models) or `phalanx deploy-model -f x`.\n"
    found = list(mentions(text, "doc.md"))
    assert [(m.command, m.options) for m in found] == [
        ("plan", ("--list-models",)),
        ("deploy-model", ("-f",)),
    ]
    assert "--list-models" not in known_options("plan")
    assert "deploy-model" not in commands()
