"""Reading an engine's flags from a container's command and args, as the engine's argparse would.

Pure and shared: the API reads a role's prefill/decode kind from them, the router the served model
names. The engine command may be wrapped in a shell script (`sh -c SCRIPT`, as vLLM's Ray launcher
and Kthena's manifests do): its simple commands are read one by one.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

# `sh -c SCRIPT` and friends: the engine command is inside the script.
_SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "zsh"})
_SHELL_OPERATOR_CHARS = "();<>|&\n"


def strings(value: Any) -> list[str]:
    """The string items of a list (command and args as written); anything else is no argument."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def container_argv(container: Mapping[str, Any]) -> list[str]:
    return [*strings(container.get("command")), *strings(container.get("args"))]


def container_commands(container: Mapping[str, Any]) -> list[list[str]]:
    """The commands a container runs: its argv, or the simple commands of its `sh -c` script."""
    argv = container_argv(container)
    script = shell_script(argv)
    return [argv] if script is None else script_commands(script)


def shell_script(argv: Sequence[str]) -> str | None:
    """SCRIPT of `sh [options] -c SCRIPT` (also `-lc`, `-ec`, `bash --login -c`...), else None."""
    if not argv or posixpath.basename(argv[0]) not in _SHELLS:
        return None
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-o", "+o"):
            next(args, None)  # its option name
        elif arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]:
            return next(args, None)
        elif not arg.startswith(("-", "+")):
            return None  # a script file: what it runs is not in the pod
    return None


def script_commands(script: str) -> list[list[str]]:
    """Simple commands of a shell script, split on newlines and operators (`;`, `&&`, `|`, ...)."""
    lexer = shlex.shlex(script.replace("\\\n", " "), posix=True, punctuation_chars=_SHELL_OPERATOR_CHARS)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token and all(ch in _SHELL_OPERATOR_CHARS for ch in token):
                commands.append([])
            else:
                commands[-1].append(token)
    except ValueError:  # unbalanced quotes: nothing in it can be trusted
        return []
    return [command for command in commands if command]


def flag_values(command: Sequence[str], flag: str) -> list[str] | None:
    """The values of the last `flag` in `command` (`--flag a b` or `--flag=a`), None when absent.

    vLLM and SGLang also accept a flag with underscores; a value list ends at the next option.
    """
    values: list[str] | None = None
    i = 0
    while i < len(command):
        option, eq, value = command[i].partition("=")
        i += 1
        if not option.startswith("--") or option.replace("_", "-") != flag:
            continue
        if eq:
            values = [value]
            continue
        values = []
        while i < len(command) and not command[i].startswith("-"):
            values.append(command[i])
            i += 1
    return values
