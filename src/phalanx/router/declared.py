"""The models the router holds requests for while nothing serves them: pure functions over plain data.

A model is declared by a ModelServing that exists (even at zero replicas, or while its first group
starts) or by the router's `--hold-model` option. A request for a declared model with no routable
endpoint waits in the admission queue instead of getting a 503; a model nobody declares or serves
gets the 404 at once once the declarations are complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.router.pods import entry_model_names

Object = Mapping[str, Any]


@dataclass(frozen=True)
class Declared:
    """`complete`: every ModelServing's model names could be read from its spec, so a model outside
    `models` that no endpoint serves is unknown for sure (404), even with no endpoint at all."""

    models: frozenset[str] = frozenset()
    complete: bool = False

    def with_models(self, extra: Iterable[str]) -> Declared:
        return Declared(self.models | frozenset(extra), self.complete)


def _mapping(obj: Any, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def serving_models(serving: Object) -> tuple[str, ...] | None:
    """The names a ModelServing's entry pods will serve (every role's), or None when some role's
    names cannot be read before its pods run (no `--served-model-name`, or `$` expansion)."""
    roles = _mapping(_mapping(serving, "spec"), "template").get("roles")
    names: list[str] = []
    for role in roles if isinstance(roles, list) else []:
        found = entry_model_names(_mapping(role, "entryTemplate"))
        if not found:
            return None
        names.extend(found)
    return tuple(dict.fromkeys(names)) or None


def declared_by_servings(servings: Iterable[Object]) -> Declared:
    """What the ModelServings that exist and are not being deleted declare."""
    models: set[str] = set()
    complete = True
    for serving in servings:
        if _mapping(serving, "metadata").get("deletionTimestamp"):
            continue  # takes no new requests: its endpoints are draining
        names = serving_models(serving)
        if names is None:
            complete = False
        else:
            models.update(names)
    return Declared(frozenset(models), complete)
