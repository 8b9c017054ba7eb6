"""Imported objects as YAML, each note a comment above the field it is about."""

from __future__ import annotations

import textwrap
from io import StringIO
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from phalanx.api.errors import Path
from phalanx.api.yamlfile import kubectl_writer
from phalanx.importers.base import Converted, Note

_WIDTH = 100


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        return CommentedMap((key, _commented(item)) for key, item in value.items())
    if isinstance(value, list):
        return CommentedSeq(_commented(item) for item in value)
    return value


def _text(note: Note) -> str:
    prefix = "phalanx import (not kept): " if note.lost else "phalanx import: "
    return "\n".join(textwrap.wrap(prefix + note.text, _WIDTH, break_on_hyphens=False))


def _depth_column(path: Path) -> int:
    """Column of the key at `path` in block style with Kubernetes' list indentation (`- ` at the key)."""
    return 2 * (sum(1 for part in path if isinstance(part, str)) - 1)


def _existing(root: Any, path: Path) -> Path:
    """The longest prefix of `path` that exists in `root`."""
    node: Any = root
    found: Path = ()
    for part in path:
        in_map = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_map or in_list):
            break
        node = node[part]
        found = (*found, part)
    return found


def _anchor(root: CommentedMap, note: Note) -> Path:
    """Where a note's comment goes: its field, or the closest parent that exists in the output."""
    path = _existing(root, note.path)
    if len(path) >= 2 and isinstance(path[-2], int):
        # A comment before the first key of a list item would split `- ` from its key: put it before the item.
        item: Any = root
        for part in path[:-1]:
            item = item[part]
        if next(iter(item), None) == path[-1]:
            path = path[:-1]
    return path


def _attach(root: CommentedMap, notes: tuple[Note, ...], prelude: list[str]) -> None:
    grouped: dict[Path, list[str]] = {}
    for note in notes:
        grouped.setdefault(_anchor(root, note), []).append(_text(note))
    for path, texts in grouped.items():
        if not path:
            prelude.extend(texts)
            continue
        parent: Any = root
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        column = _depth_column(path) if isinstance(last, str) else _depth_column(path[:-1])
        parent.yaml_set_comment_before_after_key(last, before="\n".join(texts), indent=column)


def render_imported(items: list[Converted]) -> str:
    """Multi-document YAML of every output object, with a header naming its source."""
    yaml = kubectl_writer()  # strings kubectl would read as something else (`yes`, `0777`) are quoted
    out = StringIO()
    first = True
    for item in items:
        if item.obj is None:
            continue
        document = _commented(item.obj)
        prelude: list[str] = []
        _attach(document, item.notes, prelude)
        header = [f"phalanx import: from {item.source}" if item.converted else f"unchanged: {item.source}"]
        if not first:
            out.write("---\n")
        first = False
        for line in "\n".join(header + prelude).splitlines():
            out.write(f"# {line}\n".replace("# \n", "#\n"))
        stream = StringIO()
        yaml.dump(document, stream)
        out.write(stream.getvalue())
    return out.getvalue()
