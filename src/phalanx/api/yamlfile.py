"""Read YAML into plain Python data exactly as kubectl would send it, remembering where every field was.

kubectl splits a file into documents at lines starting with `---`, reads each with YAML 1.1 rules
(go-yaml v2: `0777` is 511, `on` is true, `<<` merges, a repeated key keeps its last value) and sends
the JSON of it. We parse with ruamel.yaml only as far as its node graph (line and column of every
node), then build the data with go-yaml's rules (`kubeyaml.py`), so that `phalanx validate` judges
what the API server will receive. Problems kubectl would refuse the file for are errors; a repeated
key is a warning. A path -> (line, column) map lets any error about a field point at its line.

The work one file can cause is bounded before it is done: its size, the size of each document, how
deep it nests (checked while scanning, so a line of ten thousand `[` costs nothing), and how much
data its aliases expand to (checked while building, so an alias bomb stops at the budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scanner import RoundTripScanner
from ruamel.yaml.tag import Tag

from phalanx.api import kubeyaml
from phalanx.api.errors import FieldError, Path, SpecError

_PLAIN = "!phalanx/plain"  # marks an untagged plain scalar: only those are resolved as YAML 1.1 types
_SEPARATOR = "---"
# kubectl reads any size and 10,000 levels; the API server takes a request body of at most 3 MiB, and no
# Kubernetes object nests deeper than a few dozen levels. Bounds on what one file may cost to read:
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DOCUMENT_BYTES = 3 * 1024 * 1024  # the text of a document, and the JSON its aliases expand to
MAX_DEPTH = 100
MAX_VALUES = 200_000  # values in one document, aliases expanded; a ModelServing has a few hundred


@dataclass(frozen=True)
class Document:
    """One YAML document: its data, where each field sits in the file, and what reading it found."""

    data: Any
    index: int = 0
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: tuple[FieldError, ...] = ()

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


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Scanner(RoundTripScanner):
    """Stops at the first flow collection nested too deep: the scanner looks ahead over every `[`
    that may start a key, at a cost that grows with the square of the depth."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: Any) -> None:
        if len(self.flow_context) >= MAX_DEPTH:
            raise _TooDeep(self.reader.get_mark().line)
        super().fetch_flow_collection_start(TokenClass, to_push)


class _Composer(Composer):
    """ruamel's composer, leaving every untagged plain scalar unresolved for go-yaml's rules."""

    def compose_scalar_node(self, anchor: Any) -> Any:
        event = self.parser.get_event()
        tag = event.ctag
        if tag is None:
            tag = Tag(suffix=_PLAIN if event.implicit[0] else kubeyaml.STR)
        value = event.value
        if event.style == ">":
            # ruamel's round-trip scanner marks each fold with a BEL to rebuild the folds on output; the
            # value (and what kubectl sends) has none: YAML content cannot hold a BEL itself.
            value = value.replace("\a", "")
        node = ScalarNode(tag, value, event.start_mark, event.end_mark, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node


class _Refused(Exception):
    """kubectl would refuse the whole document (a recursive or excessive alias)."""


class _TooLarge(Exception):
    """The document expands to more than the API server would take."""


class _Reader:
    """Builds plain data from one document's nodes the way go-yaml v2 decodes into interface{}."""

    def __init__(self, line_offset: int) -> None:
        self.line_offset = line_offset
        self.positions: dict[Path, tuple[int, int]] = {}
        self.problems: list[FieldError] = []
        self.fatal: list[FieldError] = []
        self._active: set[int] = set()
        self._seen: set[int] = set()
        self._alias_depth = 0
        self._decoded = 0
        self._aliased = 0
        self._json_bytes = 0  # a running estimate of the size of the JSON being built
        self._warned: set[tuple[int, int]] = set()

    def mark(self, node: Node) -> tuple[int, int]:
        return (node.start_mark.line + 1 + self.line_offset, node.start_mark.column + 1)

    def error(
        self, path: Path, node: Node, message: str, fix: str, value: Any = None, *, fatal: bool = True
    ) -> None:
        """`fatal`: go-yaml fails while decoding; otherwise only the JSON of the final data fails."""
        line, column = self.mark(node)
        extra: dict[str, Any] = {} if value is None else {"value": value}
        problem = FieldError(path, message, fix=fix, line=line, column=column, **extra)
        (self.fatal if fatal else self.problems).append(problem)

    def value(self, node: Node, path: Path) -> Any:
        key = id(node)
        if key in self._active:
            raise _Refused(f"the anchor at line {self.mark(node)[0]} contains itself")
        if len(path) > MAX_DEPTH:  # aliases nested in aliases nest deeper than the text does
            raise _TooDeep(self.mark(node)[0])
        alias = key in self._seen
        self._seen.add(key)
        self._count(alias)
        self._active.add(key)
        self._alias_depth += alias
        try:
            self._grow(len(node.value) + 3 if isinstance(node, ScalarNode) else 2)
            if isinstance(node, MappingNode):
                out: dict[str, Any] = {}
                self.mapping(node, path, out)
                return out
            if isinstance(node, SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.positions[(*path, index)] = self.mark(item)
                    items.append(self.value(item, (*path, index)))
                return items
            assert isinstance(node, ScalarNode)
            return self.scalar_value(node, path)
        finally:
            self._active.discard(key)
            self._alias_depth -= alias

    def _count(self, alias: bool) -> None:
        # go-yaml's guard against alias bombs ("billion laughs"), and ours: a plain cap.
        self._decoded += 1
        if self._decoded > MAX_VALUES:
            raise _TooLarge
        if self._alias_depth > 0 or alias:
            self._aliased += 1
        if (
            self._aliased > 100
            and self._decoded > 1000
            and self._aliased / self._decoded > _allowed_ratio(self._decoded)
        ):
            raise _Refused("the document contains excessive aliasing")

    def _grow(self, size: int) -> None:
        self._json_bytes += size
        if self._json_bytes > MAX_DOCUMENT_BYTES:
            raise _TooLarge

    def scalar(self, node: ScalarNode) -> kubeyaml.Scalar:
        tag = str(node.tag)
        if tag == _PLAIN:
            return kubeyaml.resolve_plain(node.value)
        return kubeyaml.resolve_tagged(node.value, tag)

    def scalar_value(self, node: ScalarNode, path: Path) -> Any:
        if _has_surrogate(node.value):
            self.error(
                path,
                node,
                "holds a lone UTF-16 surrogate escape, which is not a character: kubectl refuses the file",
                fix="write the character itself, or its \\U escape",
                value=node.value,
            )
            return _DROPPED
        try:
            return kubeyaml.json_value(self.scalar(node))
        except kubeyaml.ScalarError as exc:
            self.unsendable(path, node, exc, "cannot be sent to the API server", "the value")
            return _DROPPED

    def unsendable(self, path: Path, node: ScalarNode, exc: kubeyaml.ScalarError, what: str, it: str) -> None:
        self.error(
            path,
            node,
            f"{what} ({exc}), so kubectl refuses the file",
            fix=f"quote {it} to make it a string"
            + (", or write a finite number" if it == "the value" else ""),
            value=node.value,
            fatal=isinstance(exc, kubeyaml.DecodeError),
        )

    def mapping(self, node: MappingNode, path: Path, out: dict[str, Any]) -> None:
        written: set[str] = set()
        for key_node, value_node in node.value:
            if _is_merge(key_node):
                self.merge(value_node, path, out)
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            self._grow(len(key) + 4)
            child = (*path, key)
            # The value written last is the one sent: what was wrong with an earlier one is moot.
            self.problems = [p for p in self.problems if p.path[: len(child)] != child]
            if key in written and self.mark(key_node) not in self._warned:
                self._warned.add(self.mark(key_node))
                line, column = self.mark(key_node)
                self.problems.append(
                    FieldError(
                        child,
                        "is written twice in one mapping; kubectl keeps the last value, and so does Phalanx",
                        fix="remove the earlier one",
                        severity="warning",
                        line=line,
                        column=column,
                    )
                )
            written.add(key)
            self.positions[child] = self.mark(key_node)
            value = self.value(value_node, child)
            if value is _DROPPED:
                out.pop(key, None)
            else:
                out[key] = value

    def merge(self, node: Node, path: Path, out: dict[str, Any]) -> None:
        # go-yaml merges in place, in order: merged keys override the keys written before `<<`;
        # from a list of mappings the first one wins.
        sources = list(reversed(node.value)) if isinstance(node, SequenceNode) else [node]
        if not all(isinstance(source, MappingNode) for source in sources):
            self.error(
                path,
                node,
                "has a `<<` merge key whose value is not a mapping or a list of mappings, "
                "so kubectl refuses the file",
                fix="merge an anchored mapping (`<<: *defaults`) or a list of them",
            )
            return
        for source in sources:
            assert isinstance(source, MappingNode)
            self._count(id(source) in self._seen)
            self._seen.add(id(source))
            self.mapping(source, path, out)

    def key(self, node: Node, path: Path) -> str | None:
        if not isinstance(node, ScalarNode):
            self.error(
                path,
                node,
                "has a key that is a mapping or a list, so kubectl refuses the file",
                fix="use a plain string as the key",
            )
            return None
        try:
            return kubeyaml.json_key(self.scalar(node))
        except kubeyaml.ScalarError as exc:
            self.unsendable(path, node, exc, "has a key kubectl cannot send", "the key")
            return None


_DROPPED: Any = object()


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _is_merge(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.value == "<<" and str(node.tag) in (_PLAIN, kubeyaml.MERGE)


def _allowed_ratio(decoded: int) -> float:
    # go-yaml v2: 99% aliases while small, falling to 10% by 4,000,000 decoded nodes.
    if decoded <= 400_000:
        return 0.99
    if decoded >= 4_000_000:
        return 0.10
    return 0.99 - 0.89 * ((decoded - 400_000) / 3_600_000)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Composer = _Composer
    yaml.Scanner = _Scanner
    yaml.version = (1, 1)  # the scanner go-yaml v2 (libyaml) has
    yaml.max_depth = MAX_DEPTH
    return yaml


def _chunks(text: str, source: str | None) -> list[tuple[int, str]]:
    """kubectl's document reader: a line starting with `---` ends a document; only a comment may
    follow it. Returns (index of the chunk's first line, chunk text)."""
    chunks: list[tuple[int, str]] = []
    buffer: list[str] = []
    start = 0
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.startswith(_SEPARATOR):
            rest = line[len(_SEPARATOR) :].strip()
            if rest and not rest.startswith("#"):
                raise SpecError(
                    [
                        FieldError(
                            (),
                            f"invalid document separator: only a comment may follow '---' (got {rest!r}), "
                            "so kubectl refuses the file",
                            fix="put the document's content on the next line",
                            line=number + 1,
                            column=4,
                        )
                    ],
                    source,
                )
            if buffer:
                chunks.append((start, "".join(buffer)))
                buffer = []
                continue
        if not buffer:
            start = number
        buffer.append(line + "\n")
    if buffer:
        chunks.append((start, "".join(buffer)))
    return chunks


def _syntax_error(exc: MarkedYAMLError, offset: int, source: str | None) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
    return SpecError(
        [
            FieldError(
                path=(),
                message=f"YAML syntax error: {problem or exc}",
                fix="correct the YAML at this line (indentation, a missing ':' or an unclosed quote)",
                line=mark.line + 1 + offset if mark else None,
                column=mark.column + 1 if mark else None,
            )
        ],
        source,
    )


def decode_text(data: bytes, source: str | None = None) -> str:
    """A file's bytes as text, read as kubectl reads them: UTF-8, a UTF-8 byte order mark dropped;
    anything else (UTF-16, Latin-1) kubectl refuses, and so does Phalanx, with the offset."""
    check_file_size(len(data), source)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [
                FieldError(
                    (),
                    f"is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}), "
                    "and kubectl reads only UTF-8",
                    fix="save the file as UTF-8",
                )
            ],
            source,
        ) from None


def _json_chunks(text: str, source: str | None) -> list[tuple[int, str]]:
    """kubectl reads a file whose first character (after white space) is `{` as a stream of JSON objects:
    one chunk per object, each with the index of its first line."""
    decoder = json.JSONDecoder()
    chunks: list[tuple[int, str]] = []
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position >= len(text):
            return chunks
        try:
            _, end = decoder.raw_decode(text, position)
        except RecursionError:
            raise _too_deep(text.count("\n", 0, position) + 1, source) from None
        except json.JSONDecodeError as exc:
            raise SpecError(
                [
                    FieldError(
                        (),
                        f"JSON syntax error: {exc.msg}",
                        fix="correct the JSON at this line",
                        line=exc.lineno,
                        column=exc.colno,
                    )
                ],
                source,
            ) from None
        line = text.count("\n", 0, position)
        start_of_line = text.rfind("\n", 0, position) + 1
        # The chunk keeps its first line's indentation, so columns stay right.
        chunks.append((line, " " * (position - start_of_line) + text[position:end] + "\n"))
        position = end


def _problem(message: str, fix: str, source: str | None, line: int | None = None) -> SpecError:
    return SpecError([FieldError((), message, fix=fix, line=line)], source)


def _too_deep(line: int, source: str | None) -> SpecError:
    return _problem(
        f"nests mappings and lists more than {MAX_DEPTH} levels deep, more than Phalanx reads",
        "flatten the document; no Kubernetes object nests more than a few dozen levels",
        source,
        line,
    )


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def check_file_size(size: int, source: str | None) -> None:
    """Refuses a file bigger than Phalanx reads, before it is read."""
    if size > MAX_FILE_BYTES:
        raise _problem(
            f"is larger than the {_size(MAX_FILE_BYTES)} Phalanx reads from one file",
            "split it into several files; one object may be at most 3 MiB (the API server's limit)",
            source,
        )


def parse_yaml(text: str, source: str | None = None) -> list[Document]:
    """All non-empty documents of a YAML (or JSON) stream, as kubectl sends them, a `kind: List`'s items
    in its place; syntax errors and files or documents beyond the limits raise SpecError."""
    check_file_size(len(text), source)
    documents: list[Document] = []
    json_stream = text.lstrip(" \t\r\n\ufeff").startswith("{")
    chunks = _json_chunks(text, source) if json_stream else _chunks(text, source)
    for index, (offset, chunk) in enumerate(chunks):
        if len(chunk) > MAX_DOCUMENT_BYTES:
            raise _problem(
                f"this document is {_size(len(chunk))}; the API server refuses an object over "
                f"{_size(MAX_DOCUMENT_BYTES)}",
                "move large content (scripts, templates) into a ConfigMap or the image",
                source,
                offset + 1,
            )
        try:
            nodes = _yaml().compose_all(StringIO(chunk))
            node = next(iter(nodes), None)  # go-yaml reads the first document of a chunk only
        except _TooDeep as exc:
            raise _too_deep(exc.line + 1 + offset, source) from None
        except MaxDepthExceededError as exc:
            mark = exc.problem_mark
            raise _too_deep(mark.line + 1 + offset if mark else offset + 1, source) from None
        except MarkedYAMLError as exc:
            raise _syntax_error(exc, offset, source) from None
        except YAMLError as exc:
            raise SpecError(
                [FieldError(path=(), message=f"YAML error: {exc}", fix="correct the YAML")], source
            ) from None
        except RecursionError:
            raise _too_deep(offset + 1, source) from None
        if node is None:
            continue
        reader = _Reader(offset)
        try:
            data = reader.value(node, ())
        except _Refused as exc:
            raise SpecError(
                [FieldError((), f"{exc}, so kubectl refuses the file", fix="use fewer aliases")], source
            ) from None
        except _TooLarge:
            raise _problem(
                f"this document holds (its aliases expanded) more than {MAX_VALUES:,} values or "
                f"{_size(MAX_DOCUMENT_BYTES)} of JSON, more than Phalanx reads; the API server refuses "
                "an object over 3 MiB",
                "use fewer aliases, or smaller anchored values",
                source,
                offset + 1,
            ) from None
        except _TooDeep as exc:
            raise _too_deep(exc.line, source) from None
        except RecursionError:
            raise _too_deep(offset + 1, source) from None
        if data is None or data is _DROPPED:
            continue  # kubectl skips empty and null documents
        problems = tuple(replace(p, document=index) for p in reader.fatal + reader.problems)
        documents.append(Document(data=data, index=index, positions=reader.positions, problems=problems))
    return [item for document in documents for item in _list_items(document)]


def _list_items(document: Document) -> list[Document]:
    """kubectl applies the items of a `v1` List (what `kubectl get -o yaml` prints) as objects of theirs."""
    data = document.data
    if not (
        isinstance(data, dict)
        and data.get("apiVersion") == "v1"
        and data.get("kind") == "List"
        and isinstance(data.get("items"), list)
    ):
        return [document]
    items = []
    for index, item in enumerate(data["items"]):
        prefix: Path = ("items", index)
        positions = {path[2:]: at for path, at in document.positions.items() if path[:2] == prefix}
        problems = tuple(replace(p, path=p.path[2:]) for p in document.problems if p.path[:2] == prefix)
        items.append(Document(data=item, index=document.index, positions=positions, problems=problems))
    return items


class _Representer(RoundTripRepresenter):
    """Quotes every string kubectl would read back as something else (`on`, `0777`, `1_0`, `<<`)."""

    def represent_str(self, data: str) -> Any:
        if data == "<<" or kubeyaml.resolve_plain(data) != kubeyaml.Scalar(kubeyaml.STR, data):
            return self.represent_scalar(kubeyaml.STR, data, style="'")
        return super().represent_str(data)


_Representer.add_representer(str, _Representer.represent_str)


def kubectl_writer() -> YAML:
    """A writer of Kubernetes' usual block style, keys in insertion order (comments of ruamel's
    commented maps kept), whose output kubectl reads back as exactly the objects written."""
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    yaml.width = 4096  # long shell commands stay on one line
    return yaml


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML that kubectl reads back as exactly these objects."""
    yaml = kubectl_writer()
    stream = StringIO()
    yaml.dump_all(objects, stream)
    return stream.getvalue()
