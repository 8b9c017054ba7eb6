"""Read YAML into plain Python data while remembering where every field was written.

ruamel.yaml keeps line and column marks on round-trip nodes; we copy the data into plain dicts
and lists (so nothing downstream depends on ruamel types) and keep a path -> (line, column) map
so that any error about a field can point at its line.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from phalanx.api.errors import FieldError, Path, SpecError


@dataclass(frozen=True)
class Document:
    """One YAML document: its data and where each field sits in the file."""

    data: Any
    index: int = 0
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, error: FieldError) -> FieldError:
        """Attach the line of the field, or of its nearest written ancestor."""
        path = error.path
        while True:
            if path in self.positions:
                line, column = self.positions[path]
                return replace(error, line=line, column=column, document=self.index)
            if not path:
                return replace(error, document=self.index)
            path = path[:-1]


def _plain(node: Any, path: Path, positions: dict[Path, tuple[int, int]]) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            try:
                line, column = node.lc.key(key)
                positions[child] = (line + 1, column + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key)] = _plain(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for index, value in enumerate(node):
            child = (*path, index)
            try:
                line, column = node.lc.item(index)
                positions[child] = (line + 1, column + 1)
            except (KeyError, TypeError, AttributeError, IndexError):
                pass
            items.append(_plain(value, child, positions))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime.date | datetime.datetime):
        return node.isoformat()
    if isinstance(node, str):
        return str(node)
    return node


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def parse_yaml(text: str, source: str | None = None) -> list[Document]:
    """All non-empty documents of a YAML stream; syntax errors raise SpecError with line numbers."""
    documents: list[Document] = []
    try:
        for index, node in enumerate(_yaml().load_all(StringIO(text))):
            if node is None:
                continue
            positions: dict[Path, tuple[int, int]] = {}
            data = _plain(node, (), positions)
            documents.append(Document(data=data, index=index, positions=positions))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise SpecError(
            [
                FieldError(
                    path=(),
                    message=f"YAML syntax error: {problem or exc}",
                    fix="correct the YAML at this line (indentation, a missing ':' or an unclosed quote)",
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
            ],
            source,
        ) from None
    except YAMLError as exc:
        raise SpecError(
            [FieldError(path=(), message=f"YAML error: {exc}", fix="correct the YAML")], source
        ) from None
    return documents


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML in Kubernetes' usual block style, keys in insertion order."""
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    yaml.width = 4096  # long shell commands stay on one line
    stream = StringIO()
    yaml.dump_all(objects, stream)
    return stream.getvalue()
