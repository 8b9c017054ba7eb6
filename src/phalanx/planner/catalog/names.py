"""Catalog name lookup shared by the model and GPU catalogs: case-insensitive keys and close-name hints.

A typo in a model or instance name is the most common planning mistake, so an unknown name is answered
with the nearest known names rather than a bare KeyError.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


def normalise(name: str) -> str:
    """The lookup key for a name: catalogs match names case-insensitively and ignore surrounding spaces."""
    return name.strip().lower()


def close_names(name: str, index: Mapping[str, str], limit: int = 3) -> list[str]:
    """Up to `limit` canonical names whose keys in `index` (key -> canonical name) are close to `name`."""
    key = normalise(name)
    found: list[str] = []
    contained = [canonical for alias, canonical in index.items() if key and (key in alias or alias in key)]
    close = difflib.get_close_matches(key, list(index), n=limit * 3, cutoff=0.6)
    for canonical in [*(index[alias] for alias in close), *contained]:
        if canonical not in found:
            found.append(canonical)
    return found[:limit]


class UnknownNameError(KeyError):
    """A name that is not in a catalog. A KeyError, so `except KeyError` callers keep working."""

    def __init__(self, kind: str, name: str, suggestions: Iterable[str], known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        self.known = tuple(known)
        super().__init__(name)

    def __str__(self) -> str:
        message = f"unknown {self.kind} {self.name!r}"
        if self.suggestions:
            return f"{message}; did you mean {', '.join(self.suggestions)}?"
        return f"{message}; known: {', '.join(self.known)}"
