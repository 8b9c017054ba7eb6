"""Reading an engine's flags from a container's command and args, as the engine's argparse would.

Pure and shared: the API reads a role's prefill/decode kind from them, the router the served model
names. The engine command may be wrapped in a shell script (`sh -c SCRIPT`, as vLLM's Ray launcher
and Kthena's manifests do): its simple commands are read one by one.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
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


def option_name(token: str) -> str | None:
    """The flag a `--flag` or `--flag=value` token names as vLLM reads it, None for a value.

    vLLM turns underscores into hyphens up to the first `.` only: the key of a dotted JSON field
    (`--kv-transfer-config.kv_role`) is taken verbatim. SGLang takes no underscores at all
    (see `underscored_options`).
    """
    if not token.startswith("--") or token == "--":
        return None
    head, dot, key = token.partition("=")[0].partition(".")
    return head.replace("_", "-") + dot + key


def flag_values(command: Sequence[str], flag: str) -> list[str] | None:
    """The values of the last `flag` in `command` (`--flag a b` or `--flag=a`), None when absent.

    A value list ends at the next option.
    """
    values: list[str] | None = None
    i = 0
    while i < len(command):
        token = command[i]
        i += 1
        if option_name(token) != flag:
            continue
        if "=" in token:
            values = [token.partition("=")[2]]
            continue
        values = []
        while i < len(command) and not command[i].startswith("-"):
            values.append(command[i])
            i += 1
    return values


def flag_named(token: str, flags: Iterable[str]) -> str | None:
    """The flag of `flags` a token names: in full, or abbreviated to a prefix of that flag alone."""
    name = option_name(token)
    if name is None:
        return None
    head = name.partition(".")[0]
    matches = [flag for flag in flags if flag == head or flag.startswith(head)]
    exact = [flag for flag in matches if flag == head]
    return (exact or matches)[0] if len(exact or matches) == 1 else None


def abbreviations(command: Sequence[str], flags: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(token, the flags it abbreviates) for each option of `command` that is a strict prefix of `flags`.

    Both engines' parsers take any unique prefix of a flag as that flag (argparse's allow_abbrev), so
    `--kv-transfer` is `--kv-transfer-config` to vLLM. No exact flag of vLLM 0.33.0 or SGLang 0.5.23
    is a prefix of a flag Phalanx reads, so such a token is always an abbreviation (or ambiguous).
    """
    found: list[tuple[str, list[str]]] = []
    for token in command:
        name = option_name(token)
        if name is None or name in flags:
            continue
        head = name.partition(".")[0]
        full = [flag for flag in flags if flag != head and flag.startswith(head)]
        if full:
            found.append((token, full))
    return found


def underscored_options(command: Sequence[str]) -> list[str]:
    """Options spelled with an underscore in the flag's name (`--disaggregation_mode`)."""
    return [token for token in command if token.startswith("--") and "_" in token.partition("=")[0]]
