"""`phalanx sim --help` in the layout of the rest of the CLI (typer's rich panels).

The simulator keeps argparse, whose flag names mirror vLLM's; only its help is drawn here, from the
parser's own groups, so a flag added to the parser shows up without a second list. Help texts are
drawn as plain text, never as markup, so `[default: ...]` written in them stays visible.
"""

from __future__ import annotations

import argparse
import typing

from rich import box
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

# The styles typer uses for the other commands' help.
_OPTION = "bold cyan"
_TYPE = "bold yellow"
_DIM = "dim"
_REQUIRED = "red"


def _type_name(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "<bool>"
    convert = action.type
    returns: object = str
    if convert is not None:
        try:
            returns = typing.get_type_hints(convert).get("return", convert)
        except TypeError:  # a builtin such as int: it is its own type
            returns = convert
    name = getattr(returns, "__name__", "str")
    return f"<{name}>" + ("..." if action.nargs in ("+", "*") else "")


def _help_text(action: argparse.Action) -> Columns:
    if action.dest == "help":
        return Columns([Text("Show this message and exit.")])
    items = [Text(action.help or "")]
    if action.required:
        items.append(Text("[required]", style=f"{_DIM} {_REQUIRED}"))
    elif action.nargs != 0 and action.default is not None and "[default:" not in (action.help or ""):
        items.append(Text(f"[default: {action.default}]", style=_DIM))
    return Columns(items)  # as typer lays them out: on one line when they fit


def _panel(title: str, actions: list[argparse.Action]) -> Panel:
    table = Table(highlight=False, show_header=False, expand=True, box=None, padding=(0, 1), pad_edge=False)
    table.add_column(width=1)  # the required mark
    for _ in range(3):
        table.add_column()
    table.add_column(ratio=1)
    for action in actions:
        long = [o for o in action.option_strings if o.startswith("--")]
        short = [o for o in action.option_strings if not o.startswith("--")]
        table.add_row(
            Text("*", style=_REQUIRED) if action.required else "",
            Text(",".join(long), style=_OPTION),
            Text(",".join(short), style="bold green"),
            Text(_type_name(action), style=_TYPE),
            _help_text(action),
        )
    return Panel(
        table, title=title[:1].upper() + title[1:], title_align="left", border_style=_DIM, box=box.ROUNDED
    )


def render_help(parser: argparse.ArgumentParser) -> RenderableType:
    usage = (parser.usage or "%(prog)s [OPTIONS]") % {"prog": parser.prog}
    parts: list[RenderableType] = [
        Padding(Text(f"Usage: {usage}", style="bold"), 1),
        Padding(Text(parser.description or ""), (0, 1, 1, 1)),
    ]
    for group in parser._action_groups:  # argparse keeps the groups only here
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if actions:
            parts.append(_panel(group.title or "Options", actions))
    return Group(*parts)


def print_help(parser: argparse.ArgumentParser) -> None:
    Console(highlight=False).print(render_help(parser))
