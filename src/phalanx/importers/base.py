"""What every importer returns: the converted object and a note at each field that has no equivalent.

Importers are pure: a peer system's object (plain data, as read from YAML) in, a Phalanx object and
notes out. A note that is `lost` marks behaviour of the source that the Phalanx object does not keep;
the CLI exits 3 when any note is lost, so a script can tell a faithful import from a partial one.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from phalanx.api import labels as L
from phalanx.api.errors import FieldError, Path
from phalanx.api.podspec import validate_pod_spec

Object = dict[str, Any]

# Written by the API server; meaningless (or harmful, like a foreign uid) on a new object.
_SERVER_SET_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
)
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class Note:
    """A comment for the output: `path` is the output field it is about (or its closest parent)."""

    path: Path
    text: str
    lost: bool = False


@dataclass(frozen=True)
class Converted:
    """One input document after import."""

    source: str  # "<Kind>/<name>" of the input object
    document: int  # index of the input document in its file
    obj: Object | None  # None when the object was folded into another one (a KAITO ConfigMap)
    notes: tuple[Note, ...] = ()
    converted: bool = True  # False: not a peer resource, passed through unchanged

    @property
    def lost(self) -> bool:
        return any(note.lost for note in self.notes)


@dataclass(frozen=True)
class Context:
    """What a converter may need beyond its object: the file's other documents (a KAITO Workspace reads
    its ConfigMap from them), a GPU shape for bring-your-own-node Workspaces (ModelDeployment keys)
    and a model's config.json."""

    documents: tuple[Any, ...] = ()
    shape: Mapping[str, Any] = field(default_factory=dict)
    # A config.json (as data) for a KAITO preset that the catalog does not know.
    model_config: Mapping[str, Any] | None = None


class InputError(Exception):
    """The input cannot be imported; every problem names the input field, the value and the fix."""

    def __init__(self, problems: list[FieldError]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.render() for p in problems))


@dataclass
class Notes:
    """Collects notes while an importer builds its output."""

    items: list[Note] = field(default_factory=list)

    def info(self, path: Path, text: str) -> None:
        self.items.append(Note(path, text))

    def lost(self, path: Path, text: str) -> None:
        self.items.append(Note(path, text, lost=True))


def group_of(api_version: Any) -> str:
    return api_version.split("/", 1)[0] if isinstance(api_version, str) and "/" in api_version else ""


def source_name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    return f"{obj.get('kind', '?')}/{(meta or {}).get('name', '?')}"


def require_mapping(value: Any, path: Path, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError([FieldError(path, f"must be a mapping ({what})", value=value, fix=f"write {what}")])
    return value


def optional_mapping(value: Any, path: Path, what: str) -> Mapping[str, Any]:
    """A mapping field that may be absent or null (as Kubernetes reads null: not set)."""
    return {} if value is None else require_mapping(value, path, what)


def optional_list(value: Any, path: Path, what: str) -> list[Any]:
    """A list field that may be absent or null."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(
            [FieldError(path, f"must be a list ({what})", value=value, fix=f"write {what} as a list")]
        )
    return value


def string_map(value: Any, path: Path, what: str) -> dict[str, str]:
    """Labels, annotations, selectors: a mapping of strings to strings (or absent)."""
    mapping = optional_mapping(value, path, what)
    bad = [key for key, item in mapping.items() if not isinstance(key, str) or not isinstance(item, str)]
    if bad:
        raise InputError(
            [
                FieldError(
                    (*path, str(bad[0])), "must be a string", value=mapping[bad[0]], fix="quote the value"
                )
            ]
        )
    return dict(mapping)


def source_pod_template(template: Any, path: Path, what: str) -> Mapping[str, Any]:
    """A pod template of the input, checked before it is converted: a mapping whose metadata labels and
    annotations are strings and whose spec passes the Kubernetes PodSpec schema; errors name the
    input's own fields."""
    checked = require_mapping(template, path, what)
    meta = optional_mapping(checked.get("metadata"), (*path, "metadata"), "the pod template's metadata")
    for key in ("labels", "annotations"):
        string_map(meta.get(key), (*path, "metadata", key), f"the pods' {key}")
    spec = require_mapping(checked.get("spec"), (*path, "spec"), "a PodSpec")
    problems = [p.under((*path, "spec")) for p in validate_pod_spec(spec) if p.severity == "error"]
    if problems:
        raise InputError(problems)
    return checked


def clean_metadata(obj: Mapping[str, Any]) -> Object:
    """name, namespace, labels and annotations of the input; what the API server wrote is dropped."""
    meta = require_mapping(obj.get("metadata"), ("metadata",), "the object's metadata with a name")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        fix = "give the object a name" + (
            " (a generateName cannot be kept: Phalanx derives pod names from the name)"
            if meta.get("generateName")
            else ""
        )
        raise InputError([FieldError(("metadata", "name"), "is required", fix=fix)])
    out: Object = {"name": name}
    if isinstance(meta.get("namespace"), str) and meta["namespace"]:
        out["namespace"] = meta["namespace"]
    for key in ("labels", "annotations"):
        values = string_map(meta.get(key), ("metadata", key), f"the object's {key}")
        kept = {k: v for k, v in values.items() if k != _LAST_APPLIED}
        if kept:
            out[key] = kept
    return out


def dropped_server_fields(obj: Mapping[str, Any]) -> list[str]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    return [key for key in _SERVER_SET_METADATA if key in (meta or {})]


def deep(value: Any) -> Any:
    return copy.deepcopy(value)


def without_nulls(value: Any) -> Any:
    """A copy with every null field left out: Kubernetes reads a null field as one not set (an empty
    `ports:` or `volumes:` in a hand-edited file is null)."""
    if isinstance(value, Mapping):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return copy.deepcopy(value)


_REFERENCE = re.compile(r"\$\(([^)]*)\)")


def references(text: str) -> Iterator[str]:
    """The `$(NAME)` references Kubernetes would expand in `text` (`$$` escapes a dollar)."""
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        match = _REFERENCE.match(text, i)
        if match:
            yield match.group(1)
            i = match.end()
        else:
            i += 1


# A reference that reads as an environment variable: an identifier with an upper-case letter or an
# underscore. `$(date -u)` or `$(hostname)` are shell command substitutions, which Kubernetes leaves
# alone when no variable has that name, exactly as their author meant.
_VARIABLE_LIKE = re.compile(r"^(?=.*[A-Z_])[A-Za-z_][A-Za-z0-9_]*$")


def undefined_references(spec: Mapping[str, Any], injected: frozenset[str]) -> Iterator[tuple[Path, str]]:
    """`$(NAME)` references in a pod spec's containers that nothing defines.

    Kubernetes leaves such a reference as written, so the program receives the literal `$(NAME)`:
    almost always a mistake in the source manifest.
    """
    for kind in ("initContainers", "containers"):
        containers = spec.get(kind)
        if not isinstance(containers, list):
            continue
        for index, container in enumerate(containers):
            if not isinstance(container, Mapping):
                continue
            base: Path = (kind, index)
            raw_env = container.get("env")
            env: list[Any] = raw_env if isinstance(raw_env, list) else []
            names = [item.get("name") if isinstance(item, Mapping) else None for item in env]
            defined = set(injected) | {n for n in names if isinstance(n, str)}
            for position, item in enumerate(env):
                if isinstance(item, Mapping) and isinstance(item.get("value"), str):
                    earlier = set(injected) | {n for n in names[:position] if isinstance(n, str)}
                    for name in references(item["value"]):
                        if name not in earlier and _VARIABLE_LIKE.match(name):
                            yield (*base, "env", position, "value"), name
            for key in ("command", "args"):
                parts = container.get(key)
                if not isinstance(parts, list):
                    continue
                for position, part in enumerate(parts):
                    for name in references(str(part)):
                        if name not in defined and _VARIABLE_LIKE.match(name):
                            yield (*base, key, position), name


# Names a reader may have meant when a manifest refers to a variable nothing defines.
_ADDRESS_WORDS = ("leader", "entry", "master", "head", "address", "addr")


def suggestion(name: str) -> str:
    lowered = name.lower()
    if any(word in lowered for word in _ADDRESS_WORDS):
        return f"; did you mean $({L.ENV_ENTRY_ADDRESS})?"
    return ""


def note_undefined(notes: Notes, template_path: Path, spec: Mapping[str, Any]) -> None:
    for path, name in undefined_references(spec, frozenset(L.INJECTED_ENV)):
        notes.info(
            (*template_path, "spec", *path),
            f"$({name}) is defined nowhere, in the source system either: Kubernetes passes it on as "
            f"the literal text '$({name})'{suggestion(name)}",
        )
