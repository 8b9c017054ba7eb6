"""Spec errors as values: every problem names its field path, the bad value and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

Path = tuple[str | int, ...]
Severity = Literal["error", "warning"]

_MAX_VALUE_CHARS = 80


def format_path(path: Sequence[str | int]) -> str:
    """`("spec", "template", "roles", 0, "name")` -> `spec.template.roles[0].name`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(ch.isalnum() or ch in "-_" for ch in part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def format_value(value: Any) -> str:
    text = repr(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class FieldError:
    path: Path
    message: str
    fix: str = ""
    value: Any = UNSET
    severity: Severity = "error"
    line: int | None = None  # 1-based, when the spec came from a file
    column: int | None = None
    document: int = 0  # index of the YAML document in a multi-document file

    @property
    def field(self) -> str:
        return format_path(self.path) or "<document>"

    def render(self, source: str | None = None) -> str:
        where = ""
        if source is not None:
            where = source
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        text = f"{where}{self.severity}: {self.field}: {self.message}"
        if self.value is not UNSET:
            text += f" (got {format_value(self.value)})"
        if self.fix:
            text += f"; fix: {self.fix}"
        return text

    def under(self, prefix: Path) -> FieldError:
        """The same error, for a field nested below `prefix`."""
        return replace(self, path=prefix + self.path)


class SpecError(Exception):
    """A spec that cannot be used; carries every problem found, not only the first."""

    def __init__(self, errors: Iterable[FieldError], source: str | None = None) -> None:
        self.errors = tuple(errors)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(error.render(self.source) for error in self.errors)


def only_errors(problems: Iterable[FieldError]) -> list[FieldError]:
    return [p for p in problems if p.severity == "error"]
