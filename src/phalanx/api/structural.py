"""The limits our CRD's structural schema puts on an object, checked as the API server checks them.

pydantic checks the types, enums and bounds of our own fields and the PodSpec schema the types and
required fields of pod templates. The rest of what the API server enforces from the schema is here,
read from the generated CRD itself so the two cannot drift: lengths of lists, strings and maps,
patterns (quantities, percentages), lists whose items must be unique as a whole or by their keys
(containers by name, ports by number and protocol, ...; the keys' defaults applied first),
integers beyond 64 bits (the API server reads them as floating-point numbers), and the 32-bit
fields of a pod (the pods would be refused: a Pod cannot hold them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from phalanx.api.errors import FieldError, Path, format_value

Schema = dict[str, Any]

_INT64 = (-(1 << 63), (1 << 63) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)
_QUANTITY_FIX = "write a quantity like '8', '500m' or '64Gi'"
# Why our own limits are there (Kubernetes' are its own business).
_WHY_LIMITS = {
    ("spec", "template", "roles"): " (as in Kthena: it keeps the cost of the CRD's validation rules bounded)",
    (
        "spec",
        "template",
        "gangPolicy",
        "minRoleReplicas",
    ): " (one per role, and a ServingGroup has at most 4)",
}


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def structural_problems(data: Any, schema: Schema) -> list[FieldError]:
    """Every limit of `schema` (an openAPIV3Schema) that `data` breaks, with our messages."""
    return list(_walk(data, schema, ()))


def _walk(value: Any, schema: Schema, path: Path) -> Iterator[FieldError]:
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        yield from _integer(value, schema, path)
    elif isinstance(value, str):
        yield from _string(value, schema, path)
    elif isinstance(value, list):
        yield from _list(value, schema, path)
    elif isinstance(value, dict):
        yield from _mapping(value, schema, path)


def _integer(value: int, schema: Schema, path: Path) -> Iterator[FieldError]:
    if schema.get("type") != "integer" and not schema.get("x-kubernetes-int-or-string"):
        return
    if not _INT64[0] <= value <= _INT64[1]:
        yield FieldError(
            path,
            "is beyond 64-bit integers: the API server reads it as a floating-point number, "
            "not a whole number",
            value=value,
            fix="use a smaller number",
        )
    elif schema.get("format") == "int32" and not _INT32[0] <= value <= _INT32[1]:
        yield FieldError(
            path,
            "is beyond the 32-bit integers this field of a pod holds, so the API server would "
            "refuse the pods",
            value=value,
            fix=f"use a number between {_INT32[0]} and {_INT32[1]}",
        )


def _string(value: str, schema: Schema, path: Path) -> Iterator[FieldError]:
    limit = schema.get("maxLength")
    if isinstance(limit, int) and len(value) > limit:
        yield FieldError(
            path,
            f"is {len(value)} characters long, at most {limit} are allowed",
            value=value,
            fix=f"shorten it to {limit} characters",
        )
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not _compiled(pattern).search(value):
        if schema.get("x-kubernetes-int-or-string") and "%" in pattern:
            yield FieldError(
                path,
                "is not a whole number or a percentage from 0% to 100% (written without leading zeros)",
                value=value,
                fix="write a number such as 1 or a percentage such as '25%'",
            )
        elif schema.get("x-kubernetes-int-or-string"):
            yield FieldError(path, "is not a Kubernetes quantity", value=value, fix=_QUANTITY_FIX)
        else:
            yield FieldError(path, f"does not match {pattern}", value=value, fix="correct the value")


def _list(items: list[Any], schema: Schema, path: Path) -> Iterator[FieldError]:
    yield from _too_many(path, len(items), schema.get("maxItems"), "items")
    item_schema: Schema = schema["items"] if isinstance(schema.get("items"), dict) else {}
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        yield from _unique(items, path, format_value, "value")
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        yield from _unique(items, path, lambda item: _map_key(item, keys, item_schema), " and ".join(keys))
    for index, item in enumerate(items):
        yield from _walk(item, item_schema, (*path, index))


def _too_many(path: Path, count: int, limit: Any, what: str) -> Iterator[FieldError]:
    if isinstance(limit, int) and count > limit:
        why = _WHY_LIMITS.get(tuple(p for p in path if isinstance(p, str)), "")
        yield FieldError(
            path,
            f"has {count} {what}, at most {limit} are allowed{why}",
            value=count,
            fix=f"keep at most {limit}",
        )


def _map_key(item: Any, keys: list[str], schema: Schema) -> str | None:
    if not isinstance(item, dict):
        return None
    properties = schema.get("properties", {})
    values = [item.get(key, properties.get(key, {}).get("default")) for key in keys]
    return ", ".join(f"{key} {format_value(value)}" for key, value in zip(keys, values, strict=True))


def _unique(items: list[Any], path: Path, key: Any, what: str) -> Iterator[FieldError]:
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        identity = key(item)
        if identity is None:
            continue
        if identity in first:
            yield FieldError(
                (*path, index),
                f"duplicates {path[-1] if path else 'an item'}[{first[identity]}] ({identity}): "
                f"this list holds each {what} once",
                fix="remove one of them, or change it",
            )
        else:
            first[identity] = index


def _mapping(value: dict[str, Any], schema: Schema, path: Path) -> Iterator[FieldError]:
    yield from _too_many(path, len(value), schema.get("maxProperties"), "entries")
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, child in value.items():
        if isinstance(properties, dict) and key in properties:
            yield from _walk(child, properties[key], (*path, key))
        elif isinstance(extra, dict):
            yield from _walk(child, extra, (*path, key))
