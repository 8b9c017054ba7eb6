"""Field-by-field mutation of plain JSON-like data, for tests that give every field a wrong value."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any


def field_paths(
    value: Any, path: tuple[Any, ...] = (), *, longest_list: int | None = None
) -> Iterator[tuple[Any, ...]]:
    """The path of every field and list item below `value`; lists longer than `longest_list` are not
    entered (their own path is still given)."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from field_paths(item, (*path, key), longest_list=longest_list)
    elif isinstance(value, list) and (longest_list is None or len(value) <= longest_list):
        for index, item in enumerate(value):
            yield from field_paths(item, (*path, index), longest_list=longest_list)


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of `document` with the field at `path` set to `value`."""
    out = copy.deepcopy(document)
    parent = out
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return out
