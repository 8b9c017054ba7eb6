"""Turn pydantic's validation errors into FieldErrors that say what to do."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from phalanx.api.errors import UNSET, FieldError, Path


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated/list/dict annotations."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in get_args(annotation):
            out += _unwrap(arg)
        return out
    return [annotation]


def _model_at(model: type[BaseModel], path: Path) -> type[BaseModel] | None:
    """The model class that owns the last element of `path` (for 'did you mean' suggestions)."""
    current: Any = model
    for part in path:
        candidates = _unwrap(current)
        current = None
        for candidate in candidates:
            if isinstance(part, int) or get_origin(candidate) is dict:
                if get_origin(candidate) in (list, dict):
                    current = get_args(candidate)[-1]
                    break
                continue
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                for name, info in candidate.model_fields.items():
                    if part in (info.alias, name):
                        current = info.annotation
                        break
                if current is not None:
                    break
        if current is None:
            return None
    for candidate in _unwrap(current):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _clean_loc(loc: tuple[Any, ...]) -> Path:
    """Drop pydantic's union/validator tags ('int', 'function-after[...]') from a location."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (
            part in ("int", "str", "float", "bool", "list", "dict", "none")
            or "[" in part
            or part.startswith(("function-", "literal["))
        ):
            continue
        out.append(part)
    return tuple(out)


def translate(error: ValidationError, model: type[BaseModel], prefix: Path = ()) -> list[FieldError]:
    problems: list[FieldError] = []
    seen: set[tuple[Path, str]] = set()
    for item in error.errors(include_url=False):
        path = _clean_loc(tuple(item["loc"]))
        kind = item["type"]
        value = item.get("input", UNSET)
        ctx = item.get("ctx") or {}
        if kind == "extra_forbidden":
            name = str(path[-1]) if path else "?"
            allowed = _field_names(_model_at(model, path[:-1]))
            close = difflib.get_close_matches(name, allowed, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"remove it (allowed: {', '.join(allowed)})"
            problem = FieldError(path=prefix + path, message=f"unknown field '{name}'", fix=fix)
        elif kind == "missing":
            name = str(path[-1]) if path else "?"
            problem = FieldError(path=prefix + path, message="is required", fix=f"add '{name}'")
        elif kind == "literal_error":
            expected = str(ctx.get("expected", "")).replace(" or ", ", ")
            problem = FieldError(
                path=prefix + path,
                message=f"must be one of {expected}",
                value=value,
                fix=f"use one of {expected}",
            )
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            bound = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
            word = {
                "greater_than_equal": "at least",
                "greater_than": "more than",
                "less_than_equal": "at most",
                "less_than": "less than",
            }[kind]
            problem = FieldError(
                path=prefix + path,
                message=f"must be {word} {bound}",
                value=value,
                fix=f"use a value {word} {bound}",
            )
        elif kind == "too_short":
            problem = FieldError(
                path=prefix + path,
                message=f"needs at least {ctx.get('min_length', 1)} item(s)",
                value=value,
                fix="add an item",
            )
        elif kind == "string_too_long":
            limit = ctx.get("max_length")
            problem = FieldError(
                path=prefix + path,
                message=f"is {len(value)} characters long, at most {limit} are allowed",
                value=value,
                fix=f"shorten it to {limit} characters",
            )
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            problem = FieldError(
                path=prefix + path, message="must be a whole number", value=value, fix="write a number like 2"
            )
        elif kind in ("string_type",):
            problem = FieldError(
                path=prefix + path, message="must be a string", value=value, fix="quote the value"
            )
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            problem = FieldError(
                path=prefix + path,
                message="must be a mapping of fields",
                value=value,
                fix="write 'key: value' lines indented under this field",
            )
        elif kind == "list_type":
            problem = FieldError(
                path=prefix + path, message="must be a list", value=value, fix="write '- item' lines"
            )
        elif kind in ("float_type", "float_parsing"):
            problem = FieldError(
                path=prefix + path, message="must be a number", value=value, fix="write a number like 0.9"
            )
        else:
            problem = FieldError(
                path=prefix + path,
                message=str(item["msg"]).removeprefix("Value error, "),
                value=value,
                fix=str(ctx.get("fix", "")),
            )
        key = (problem.path, problem.message)
        if key not in seen:
            seen.add(key)
            problems.append(problem)
    return problems
