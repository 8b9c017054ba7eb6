"""Every command's --help as a user reads it, in a pipe and in a terminal: every option says what it
does, and nothing written in a help text (a `[default: ...]`, a `repository[:tag]`) is lost."""

from __future__ import annotations

import argparse
import re
from typing import Any

import pytest
import typer.rich_utils
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

from phalanx import __version__
from phalanx.cli import app
from phalanx.sim.config import build_parser

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
BOX = re.compile(r"[│╭╮╰╯─]")
WIDE = {"COLUMNS": "2000"}  # no wrapping: each help text stays whole on its line

ROOT = get_command(app)
assert isinstance(ROOT, TyperGroup)
COMMANDS: dict[str, TyperCommand | TyperGroup] = {"phalanx": ROOT} | {
    f"phalanx {name}": command for name, command in ROOT.commands.items()
}


def flat(text: str) -> str:
    return " ".join(BOX.sub(" ", ANSI.sub("", text)).split())


def render(args: list[str], monkeypatch: pytest.MonkeyPatch, mode: str) -> str:
    # typer decides "terminal" once, at import; a real terminal gets colours and the same words.
    monkeypatch.setattr(typer.rich_utils, "FORCE_TERMINAL", mode == "terminal")
    env = WIDE | ({"FORCE_COLOR": "1"} if mode == "terminal" else {"NO_COLOR": "1"})
    result = CliRunner().invoke(app, [*args, "--help"], env=env)
    assert result.exit_code == 0, result.output
    if mode == "terminal":
        assert ANSI.search(result.output), "the terminal rendering should have been styled"
    return flat(result.output)


def described(command: TyperCommand | TyperGroup) -> list[Any]:
    return [p for p in command.params if not getattr(p, "hidden", False)]


@pytest.mark.parametrize("mode", ["pipe", "terminal"])
@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"phalanx sim"}))
def test_every_option_has_help_and_every_help_text_is_shown_whole(
    name: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = COMMANDS[name]
    shown = render(name.split()[1:], monkeypatch, mode)
    assert command.help, f"{name} has no description"
    assert flat(command.help.split("\n\n")[0]) in shown
    missing = [p.opts[0] for p in described(command) if not getattr(p, "help", None)]
    assert not missing, f"{name}: no help text for {', '.join(missing)}"
    for param in described(command):
        help_text: str = getattr(param, "help", "")
        assert flat(help_text) in shown, f"{name} {param.opts[0]}: help text altered when rendered"
        default = getattr(param, "show_default", None)
        if isinstance(default, str):
            assert f"[default: ({default})]" in shown, f"{name} {param.opts[0]}: default not shown"


def test_no_help_text_writes_a_default_inside_it() -> None:
    """Defaults that are not values go in show_default, which every renderer shows; inside a
    help text rich markup would take the brackets for a tag."""
    for name, command in COMMANDS.items():
        for param in described(command):
            assert "[default" not in (getattr(param, "help", None) or ""), f"{name} {param.opts[0]}"


def test_literal_defaults_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = render(["up"], monkeypatch, "pipe")
    assert "Router port (OpenAI API). [default: 8000]" in shown
    assert "GPUs to hand out. [default: (the count nvidia-smi reports, else 0)]" in shown
    assert "[default: ($PHALANX_STATE_DIR, else ~/.local/state/phalanx)]" in shown
    shown = render(["install"], monkeypatch, "pipe")
    assert "The image, as repository[:tag]. [default: (phalanx:<this version>)]" in shown


def sim_actions() -> list[argparse.Action]:
    return [a for a in build_parser()._actions if a.dest != "help"]


@pytest.mark.parametrize("mode", ["pipe", "terminal"])
def test_sim_help_is_drawn_like_the_other_commands(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = WIDE | ({"FORCE_COLOR": "1"} if mode == "terminal" else {"NO_COLOR": "1"})
    result = CliRunner().invoke(app, ["sim", "--help"], env=env)
    assert result.exit_code == 0, result.output
    assert "╭─ Model " in ANSI.sub("", result.output)  # panels, as typer draws them
    shown = flat(result.output)
    assert shown.startswith("Usage: phalanx sim --served-model-name NAME [OPTIONS]")
    assert "--help -h <bool> Show this message and exit." in shown
    for action in sim_actions():
        flag = action.option_strings[0]
        assert action.help, f"phalanx sim {flag} has no help text"
        assert flat(action.help) in shown, f"phalanx sim {flag}: help text altered when rendered"
        if action.required:
            assert f"{flat(action.help)} [required]" in shown
        elif action.default not in (None, False) and "[default:" not in action.help:
            assert f"{flat(action.help)} [default: {action.default}]" in shown, flag
    assert "--max-model-len <int> Context length: prompt + completion. [default: 4096]" in shown
    assert "--served-model-name <str>..." in shown


def test_version_option_and_command_agree() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output == f"{__version__}\n"
    assert runner.invoke(app, ["version"]).output == f"{__version__}\n"
