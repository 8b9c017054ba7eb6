"""Phalanx reads a YAML file exactly as kubectl sends it, checked against the real decoder.

`hack/control-plane/yamljson` (built by `hack/control-plane/build.sh`) runs kubectl's own reading path:
apimachinery's YAML-or-JSON decoder (sigs.k8s.io/yaml, go-yaml v2, YAML 1.1) and the unstructured
JSON round trip. Generated documents (tricky scalars in every style, tags, duplicate keys, merge keys,
several documents) must give the same data, value for value and type for type, or be refused by both.
The tool missing is a failure, not a skip: `scripts/test` always builds it first.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.api.errors import SpecError
from phalanx.api.yamlfile import dump_yaml, parse_yaml
from tests.cluster.controlplane import BUILD_CMD, locate_binaries

pytestmark = pytest.mark.cluster

TOOL = "yamljson"


@pytest.fixture(scope="module")
def kubectl_reader() -> Path:
    for variable in ("PHALANX_CONTROL_PLANE_BIN", "KUBEBUILDER_ASSETS"):
        folder = os.environ.get(variable)
        if folder and os.access(Path(folder) / TOOL, os.X_OK):
            return Path(folder) / TOOL
    found = locate_binaries().get(TOOL)
    if found is None:
        pytest.fail(f"{TOOL} is not built: run `{BUILD_CMD} {TOOL}` (scripts/test builds it)")
    return found


def kubectl_sends(tool: Path, text: str) -> list[Any] | None:
    """The documents kubectl would send, or None when it refuses the file."""
    done = subprocess.run([str(tool)], input=text, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return None
    return [json.loads(line) for line in done.stdout.splitlines()]


def phalanx_reads(text: str) -> list[Any] | None:
    try:
        documents = parse_yaml(text)
    except SpecError:
        return None
    if any(p.severity == "error" for d in documents for p in d.problems):
        return None
    return [d.data for d in documents]


def same(a: Any, b: Any) -> bool:
    """Equal values of equal JSON types (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_read_alike(tool: Path, text: str) -> None:
    expected, got = kubectl_sends(tool, text), phalanx_reads(text)
    assert (expected is None) == (got is None), f"kubectl sends {expected!r}, Phalanx reads {got!r}\n{text}"
    if expected is not None and got is not None:
        assert same(expected, got), f"kubectl sends {expected!r}\nPhalanx reads {got!r}\n{text}"


# --------------------------------------------------------------------------------------------- scalars

_TRICKY = """
0777 0o17 0O17 0x1F 0X1f 0b101 0B101 1_000 1__0 _1 1_ 0x_1F +12 -12 -0 +0 08 09.5 00 007
9223372036854775807 9223372036854775808 -9223372036854775809 18446744073709551615
+18446744073709551615 0b-101 0b+101 -0b11 0xFFFFFFFFFFFFFFFF 1.0 -1.5 1e3 1E3 1e+3 1e-3
1.e3 .5 .5e3 ._5 .5_5 . 1e400 1e21 1e20 0.1 1e-7 +.5 -.5 .inf -.Inf +.INF .nan .NaN inf nan
y Y yes Yes YES yEs n N no NO on On ON oN off OFF true True TRUE tRue false FALSE
~ null Null NULL nUll 2001-12-14 2001-12-14t21:59:43.10-05:00 2001-12-14T21:59:43Z
2001-13-45 12:30 190:20:30 1:20 0x 0o 0b 1_2.5 1.2_5 + abc <<
"""
TRICKY = _TRICKY.split()
plain = st.one_of(
    st.sampled_from(TRICKY),
    st.from_regex(
        r"[-+]?(0[xXoObB])?[0-9a-fA-F_]{1,8}(\.[0-9_]{0,4})?([eE][-+]?[0-9_]{1,3})?",
        fullmatch=True,
    ),
    st.from_regex(r"[A-Za-z~][A-Za-z0-9._-]{0,8}", fullmatch=True),
)
TAGS = ["!!str", "!!int", "!!float", "!!bool", "!!null", "!local"]


def _single(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


scalar = st.one_of(
    plain,
    plain,
    plain.map(_single),
    plain.map(json.dumps),
    st.tuples(st.sampled_from(TAGS), st.one_of(plain, plain.map(_single))).map(" ".join),
)
# Keys whose JSON forms all differ (`y` is "true", `010` is "8"): two different keys that meet in one
# JSON key are kept in Go's random map order, which no reader can match.
_KEYS = "name y No 010 0x10 1.5 1e3 1e6 0.1 123456789.0 -0.0 'quoted' \"dq\" a_b 2001-01-01 on_"
KEYS = _KEYS.split()

Tree = Any


def trees(depth: int) -> st.SearchStrategy[Tree]:
    if depth == 0:
        return scalar
    child = trees(depth - 1)
    entries = st.lists(st.tuples(st.sampled_from(KEYS), child), min_size=1, max_size=5)
    return st.one_of(
        scalar,
        entries.map(lambda items: ("map", items)),
        st.lists(scalar, min_size=1, max_size=3).map(lambda items: ("seq", items)),
    )


def render(tree: Tree, indent: int, merge: bool) -> str:
    pad = " " * indent
    if isinstance(tree, str):
        return f" {tree}\n"
    kind, items = tree
    if kind == "seq":
        return "\n" + "".join(f"{pad}- {item}\n" for item in items)
    lines = [f"{pad}<<: *defaults\n"] if merge else []
    for key, value in items:
        lines.append(f"{pad}{key}:{render(value, indent + 2, False)}")
    return "\n" + "".join(lines)


documents = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from(KEYS), trees(2)), min_size=1, max_size=6),
        st.booleans(),
    ),
    min_size=1,
    max_size=3,
)
separators = st.sampled_from(["---\n", "--- # next\n", "---\n# only a comment\n---\n"])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, separators)
def test_generated_documents_read_as_kubectl_sends_them(
    kubectl_reader: Path, docs: list[tuple[list[tuple[str, Tree]], bool]], separator: str
) -> None:
    texts = []
    for entries, merge in docs:
        head = "defaults: &defaults {name: base, y: 1, a_b: 0777}\n" if merge else ""
        body = render(("map", entries), 0, merge).lstrip("\n")
        texts.append(head + body)
    assert_read_alike(kubectl_reader, separator.join(texts))


def test_the_forms_kubectl_reads_differently_from_yaml_1_2(kubectl_reader: Path) -> None:
    """Each line is a class the loader once read the YAML 1.2 way (see kubeyaml.py)."""
    text = """\
apiVersion: v1
kind: ConfigMap
octal: 0777
hex: 0x1F
binary: 0b101
underscores: 1_000
booleans: [y, Y, yes, Yes, YES, n, N, no, NO, on, On, ON, off, Off, OFF, yEs]
nulls: [~, null, Null, NULL, nUll, ""]
floats: [1.0, 1e3, .5, 1e400, 08, 1e21, 0.1]
timestamps: [2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10]
defaults: &defaults {replicas: 2, y: 3}
merged:
  replicas: 1
  <<: *defaults
listmerge:
  <<: [{a: 1}, {a: 2, b: 2}]
repeated: 1
repeated: 2
1: int key
1.5: float key
yes: bool key
tagged: [!!str 0777, !!int "0777", !!float 1, !local text]
"""
    assert_read_alike(kubectl_reader, text)
    assert phalanx_reads(text) == kubectl_sends(kubectl_reader, text)


@pytest.mark.parametrize(
    "text",
    [
        "a: >\n  x\n  y\n",
        "a: >-\n  x\n  y\n",
        "a: >+\n  x\n  y\n\n",
        "a: >\n  x\n    more indented\n  z\n",
        "a: >\n  x\n\n  after a blank\n",
        "a: >2\n   x\n  y\n",
        "a:\n- >\n  in a list\n  folded\n",
        "a: >\n  trailing \n  space\n",
        'a: "x\n  y"\n',
        '{"a": 1}\n{"b": [2, 3]}\n',
    ],
)
def test_block_scalars_and_streams_read_as_kubectl_sends_them(kubectl_reader: Path, text: str) -> None:
    """Folded block scalars (ruamel marks folds with a BEL) and JSON streams, as kubectl reads them."""
    assert phalanx_reads(text) == kubectl_sends(kubectl_reader, text)


@pytest.mark.parametrize(
    "text",
    [
        "a: .inf\n",
        "a: .nan\n",
        "? [a]\n: 1\n",
        "~: 1\n",
        "18446744073709551615: 1\n",
        "a: !!int abc\n",
        "a: 1\n--- b: 2\n",
        "a: &x [*x]\n",
        "<<: 1\n",
        'a: "\\ud800"\n',
    ],
)
def test_files_kubectl_refuses_are_refused(kubectl_reader: Path, text: str) -> None:
    assert kubectl_sends(kubectl_reader, text) is None
    assert phalanx_reads(text) is None


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "on", "0777", "<<", "b"]), plain, min_size=1, max_size=4))
def test_rendered_yaml_reads_back_the_same_in_kubectl(kubectl_reader: Path, data: dict[str, str]) -> None:
    """`phalanx render` output piped to kubectl: every string stays a string."""
    text = dump_yaml([data])
    assert kubectl_sends(kubectl_reader, text) == [data]
