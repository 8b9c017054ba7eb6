"""Check pod templates against the real Kubernetes PodSpec schema.

The schema comes from kubernetes-validate (Kubernetes' own OpenAPI definitions turned into strict
JSON Schema), so unknown fields and wrong types in a pod template are caught before anything
reaches a cluster, with the same paths Kubernetes would report.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from phalanx.api.errors import FieldError, Path

KUBERNETES_SCHEMA_VERSION = "1.34.0"
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


@cache
def _definitions() -> dict[str, Any]:
    folder = f"kubernetes-json-schema/v{KUBERNETES_SCHEMA_VERSION}-local-strict/_definitions.json"
    text = resources.files("kubernetes_validate").joinpath(folder).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator(definition: str) -> jsonschema.protocols.Validator:
    definitions = _definitions()
    registry: Registry[Any] = Registry().with_resource(_DEFINITIONS_ID, Resource.from_contents(definitions))
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kubernetes.io/api/phalanx-entry.json",
        "$ref": f"/api/_definitions.json#/$defs/{definition}",
    }
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema, registry=registry)


def _schema_at(definition: str, path: Path) -> dict[str, Any]:
    """The schema node for `path` inside `definition`, following $refs (for field suggestions)."""
    defs = _definitions()["$defs"]
    node: dict[str, Any] = defs[definition]
    for part in path:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = node.get("items", {}) if isinstance(part, int) else node.get("properties", {}).get(part, {})
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _types_of(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if k != "null"]
    return []


def _describe(error: jsonschema.ValidationError, definition: str) -> FieldError:
    path: Path = tuple(error.absolute_path)
    schema: dict[str, Any] = dict(error.schema) if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(_schema_at(definition, path).get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        name = unexpected[0] if unexpected else "?"
        close = difflib.get_close_matches(name, allowed, n=1)
        fix = f"did you mean '{close[0]}'?" if close else "remove it; Kubernetes does not know this field"
        return FieldError(path=(*path, name), message=f"unknown field '{name}'", fix=fix)
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else str(error.message)
        return FieldError(path=(*path, missing), message="is required", fix=f"add '{missing}'")
    if error.validator == "type":
        wanted = " or ".join(_TYPE_WORDS.get(t, t) for t in _types_of(schema))
        return FieldError(
            path=path, message=f"must be {wanted}", value=error.instance, fix=f"write {wanted} here"
        )
    if error.validator == "oneOf":
        wanted_types: list[str] = []
        for option in schema.get("oneOf", []):
            wanted_types += [_TYPE_WORDS.get(t, t) for t in _types_of(option) if t not in wanted_types]
        wanted = " or ".join(dict.fromkeys(wanted_types)) or "a valid value"
        return FieldError(
            path=path, message=f"must be {wanted}", value=error.instance, fix=f"write {wanted} here"
        )
    if error.validator == "enum":
        options = ", ".join(repr(v) for v in schema.get("enum", []) if v is not None)
        return FieldError(
            path=path, message=f"must be one of {options}", value=error.instance, fix="use one of those"
        )
    return FieldError(path=path, message=error.message, value=error.instance, fix="see the Kubernetes API")


def validate_pod_spec(spec: Any) -> list[FieldError]:
    """Problems with a core/v1 PodSpec, each with a path relative to the spec."""
    return _validate("io.k8s.api.core.v1.PodSpec", spec)


def _validate(definition: str, instance: Any) -> list[FieldError]:
    errors = sorted(_validator(definition).iter_errors(instance), key=lambda e: list(map(str, e.path)))
    return [_describe(error, definition) for error in errors]
