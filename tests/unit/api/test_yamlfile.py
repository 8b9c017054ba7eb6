"""The YAML loader reads a file as kubectl sends it (YAML 1.1, go-yaml v2, Go's JSON).

The expected values below were read from kubectl's own decoder (`hack/control-plane/yamljson`); the
cluster tier (`tests/cluster/test_yaml_kubectl.py`) compares generated documents with it.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from phalanx.api import load_text
from phalanx.api.crd import crd_yaml, crds
from phalanx.api.errors import SpecError
from phalanx.api.kubeyaml import Scalar, json_key, resolve_plain
from phalanx.api.yamlfile import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_FILE_BYTES,
    MAX_VALUES,
    decode_text,
    dump_yaml,
    parse_yaml,
)

SENT = {
    # integers: octal (a leading 0 too), hex, binary, underscores, signs, int64 and beyond
    "0777": 511,
    "0o17": 15,
    "0O17": 15,
    "0x1F": 31,
    "0b101": 5,
    "0b-101": -5,
    "-0b11": -3,
    "1_000": 1000,
    "1__0": 10,
    "1_": 1,
    "0x_1F": 31,
    "_1": "_1",
    "+12": 12,
    "-0": 0,
    "08": 8,
    "09.5": 9.5,
    "007": 7,
    "9223372036854775807": 9223372036854775807,
    "9223372036854775808": 9223372036854776000,
    "-9223372036854775809": -9223372036854776000,
    "18446744073709551615": 18446744073709552000,
    "0xFFFFFFFFFFFFFFFF": 18446744073709552000,
    # floats: integral ones are sent as integers, below 1e21
    "1.0": 1,
    "1.5": 1.5,
    "1e3": 1000,
    "1.e3": 1000,
    ".5": 0.5,
    ".5_5": 0.55,
    "._5": "._5",
    "1e20": 100000000000000000000,
    "1e21": 1e21,
    "1e-7": 1e-07,
    "1e400": "1e400",
    "1_2.5": 12.5,
    "inf": "inf",
    # booleans in YAML 1.1's spellings, and what is not one
    "y": True,
    "Y": True,
    "yes": True,
    "YES": True,
    "on": True,
    "ON": True,
    "n": False,
    "No": False,
    "off": False,
    "OFF": False,
    "True": True,
    "yEs": "yEs",
    "oN": "oN",
    "tRue": "tRue",
    # nulls
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "nUll": "nUll",
    # timestamps and sexagesimals stay as written
    "2001-12-14": "2001-12-14",
    "2001-12-14t21:59:43.10-05:00": "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10": "2001-12-14 21:59:43.10",
    "190:20:30": "190:20:30",
    "0x": "0x",
    "+": "+",
}


def _read(text: str) -> list[Any]:
    return [document.data for document in parse_yaml(text)]


@pytest.mark.parametrize(("text", "value"), SENT.items())
def test_plain_scalars_are_what_kubectl_sends(text: str, value: Any) -> None:
    (data,) = _read(f"k: {text}\n")
    assert data["k"] == value
    assert type(data["k"]) is type(value)


@pytest.mark.parametrize("text", ["'0777'", '"yes"', "!!str 0777", "|\n  on\n"])
def test_quoted_tagged_and_block_scalars_are_strings(text: str) -> None:
    (data,) = _read(f"k: {text}\n")
    assert isinstance(data["k"], str)


def test_explicit_tags_convert_like_go_yaml() -> None:
    (data,) = _read('a: !!int "0x10"\nb: !!float 1\nc: !local text\nd: !!bool yes\n')
    assert data == {"a": 16, "b": 1, "c": "text", "d": True}


def test_keys_are_converted_to_their_json_strings() -> None:
    (data,) = _read("1: a\nyes: b\n1.5: c\n1e6: d\n0x10: e\n-0.0: f\n123456789.0: g\n")
    assert data == {"1": "a", "true": "b", "1.5": "c", "1e+06": "d", "16": "e", "-0": "f"} | {
        "1.2345679e+08": "g"
    }


def test_a_repeated_key_keeps_the_last_value_with_a_warning() -> None:
    loaded = load_text("a: 1\nb: 2\na: 3\n")
    (warning,) = loaded.warnings
    assert (warning.path, warning.line, warning.column) == (("a",), 3, 1)
    assert "kubectl keeps the last value" in warning.message
    (document,) = parse_yaml("a: 1\nb: 2\na: 3\n")
    assert document.data == {"a": 3, "b": 2}


def test_merge_keys_follow_go_yaml_order() -> None:
    text = """\
base: &base {replicas: 2, image: a}
after: {replicas: 1, <<: *base}
before: {<<: *base, replicas: 1}
listed: {<<: [{a: 1}, {a: 2, b: 2}]}
"""
    (data,) = _read(text)
    assert data["after"] == {"replicas": 2, "image": "a"}  # the merge overrides keys written before it
    assert data["before"] == {"replicas": 1, "image": "a"}
    assert data["listed"] == {"a": 1, "b": 2}  # the first mapping of a list wins


def test_documents_split_at_separator_lines_and_keep_their_line_numbers() -> None:
    text = "a: 1\n--- # second\n# only a comment\n---\n\nb: [x\n"
    with pytest.raises(SpecError) as raised:
        parse_yaml(text)
    (error,) = raised.value.errors
    assert error.line == 7  # in the third document, counted in the file
    documents = parse_yaml("a: 1\n--- # second\n\nb: 2\n")
    assert [d.data for d in documents] == [{"a": 1}, {"b": 2}]
    assert documents[1].positions[("b",)] == (4, 1)


def test_only_a_comment_may_follow_a_separator() -> None:
    with pytest.raises(SpecError) as raised:
        parse_yaml("a: 1\n--- b: 2\n")
    (error,) = raised.value.errors
    assert error.line == 2
    assert "kubectl refuses the file" in error.message


def test_windows_line_ends_read_the_same() -> None:
    assert _read("a: 0777\r\nb: yes\r\n") == [{"a": 511, "b": True}]


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        ("a:\n  b: .inf\n", ("a", "b"), 2),
        ("a:\n  ~: 1\n", ("a",), 2),
        ("a:\n  18446744073709551615: 1\n", ("a",), 2),
        ("a: !!int abc\n", ("a",), 1),
        ("a:\n  <<: 1\n", ("a",), 2),
        ("a:\n  ? [x]\n  : 1\n", ("a",), 2),
    ],
)
def test_what_kubectl_refuses_is_an_error_at_its_field(text: str, path: tuple[str, ...], line: int) -> None:
    (document,) = parse_yaml(text)
    (error,) = document.problems
    assert (error.severity, error.path, error.line) == ("error", path, line)
    assert "kubectl refuses the file" in error.message


def test_a_value_replaced_later_is_not_sent() -> None:
    (document,) = parse_yaml("a: .nan\na: 1\n")
    assert document.data == {"a": 1}
    assert [p.severity for p in document.problems] == ["warning"]


def test_a_decoding_error_counts_even_in_a_replaced_value() -> None:
    (document,) = parse_yaml("a: !!bool 5\na: 1\n")
    assert "error" in [p.severity for p in document.problems]


def test_recursive_anchors_are_refused() -> None:
    with pytest.raises(SpecError, match="contains itself"):
        parse_yaml("a: &x [*x]\n")


def test_empty_and_null_documents_are_skipped() -> None:
    assert _read("---\n# nothing\n---\n~\n---\na: 1\n") == [{"a": 1}]


def test_dumped_strings_read_back_as_strings() -> None:
    data = {"on": "y", "octal": "0777", "<<": "x", "f": "1.0", "t": "2001-01-01", "plain": "text"}
    (back,) = _read(dump_yaml([data]))
    assert back == data


def test_generated_crds_read_back_exactly() -> None:
    for crd in crds():
        (data,) = _read(crd_yaml(crd))
        assert data == crd


def test_resolution_of_one_scalar() -> None:
    assert resolve_plain("0777") == Scalar("tag:yaml.org,2002:int", 511)
    assert resolve_plain("2001-01-01").value == "2001-01-01"
    assert json_key(resolve_plain("off")) == "false"


def _pins(go_mod: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in go_mod.splitlines():
        words = line.replace("require ", "").split()
        if len(words) >= 2 and words[1].startswith("v") and "=>" not in words:
            pins[words[0]] = words[1]
        if "=>" in words and len(words) >= 4:
            pins[words[0]] = words[-1]  # a replace pins the version the build really uses
    return pins


def test_the_kubectl_decoder_tool_is_pinned_to_the_kube_components_yaml() -> None:
    root = Path(__file__).resolve().parents[3] / "hack" / "control-plane"
    kube, tool = (_pins((root / name / "go.mod").read_text()) for name in ("kube", "yamljson"))
    for module in ("sigs.k8s.io/yaml", "go.yaml.in/yaml/v2", "k8s.io/apimachinery"):
        assert tool[module] == kube[module], module


def test_an_octal_file_mode_reaches_the_pod_template_as_kubectl_sends_it() -> None:
    text = """\
apiVersion: serving.phalanx.dev/v1alpha1
kind: ModelServing
metadata: {name: modes}
spec:
  template:
    roles:
      - name: r
        entryTemplate:
          spec:
            containers: [{name: c, image: i}]
            volumes: [{name: v, configMap: {name: cm, defaultMode: 0777}}]
"""
    loaded = load_text(text)
    assert not loaded.errors
    (ms,) = loaded.resources
    assert ms.spec.template.roles[0].entry_template.spec["volumes"][0]["configMap"]["defaultMode"] == 511


def test_folded_block_scalars_read_as_their_text() -> None:
    # ruamel's round-trip scanner marks each fold with a BEL; what kubectl sends has none.
    (document,) = parse_yaml(
        "a: >\n  vllm serve m\n  --port 8000\nb: >-\n  x\n\n  y\nc:\n- >\n  in\n  list\n"
    )
    assert document.data == {"a": "vllm serve m --port 8000\n", "b": "x\ny", "c": ["in list\n"]}


def test_a_json_stream_is_every_object_with_its_lines() -> None:
    documents = parse_yaml('{"a": 1}\n\n  {"b": [2, 3],\n   "c": "x"}\n')
    assert [d.data for d in documents] == [{"a": 1}, {"b": [2, 3], "c": "x"}]
    assert documents[1].positions[("c",)] == (4, 4)
    with pytest.raises(SpecError) as caught:
        parse_yaml('{"a": 1}\n{"b": }\n')
    assert caught.value.errors[0].line == 2


def test_a_list_is_read_as_its_items_located_in_the_file() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- kind: A\n  x: 1\n- kind: B\n  z: 2\n"
    documents = parse_yaml(text)
    assert [d.data for d in documents] == [{"kind": "A", "x": 1}, {"kind": "B", "z": 2}]
    assert documents[1].positions[("z",)] == (7, 3)


def test_a_lone_surrogate_is_refused() -> None:
    (document,) = parse_yaml('a: "\\ud800"\nb: "\\U0001F600"\n')
    assert document.data == {"b": "\U0001f600"}
    (problem,) = document.problems
    assert problem.path == ("a",) and "surrogate" in problem.message


def test_only_utf8_is_read_as_kubectl_reads_it() -> None:
    assert decode_text("\ufeffa: é\n".encode()) == "a: é\n"
    for data in ("a: 1\n".encode("utf-16"), "a: café\n".encode("latin-1")):
        with pytest.raises(SpecError) as caught:
            decode_text(data, "f.yaml")
        assert "is not UTF-8 text" in caught.value.render()


def _refusal(text: str) -> tuple[str, float]:
    """The error reading `text` gives, and how long it took."""
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        parse_yaml(text, "f.yaml")
    return caught.value.render(), time.perf_counter() - started


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    # 10 strings, then seven levels of ten aliases each: 10**8 strings once expanded.
    lines = ["a0: &a0 [" + ",".join(["lol"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    tracemalloc.start()
    try:
        message, _ = _refusal("\n".join(lines) + "\n")
        assert tracemalloc.get_traced_memory()[1] < 64 * 1024 * 1024
    finally:
        tracemalloc.stop()
    assert "aliasing" in message or "values" in message


def test_aliases_under_go_yamls_ratio_still_stop_at_the_size_the_api_server_takes() -> None:
    # Enough plain values that go-yaml's alias ratio allows it; a 60 KB string repeated 5,000 times.
    lines = ["pad:"] + ["  - [1, 2, 3, 4, 5, 6, 7, 8]"] * 300
    lines += ['s: &s "' + "x" * 60_000 + '"', "b1: &b1 [" + ",".join(["*s"] * 100) + "]"]
    lines += ["b2: [" + ",".join(["*b1"] * 50) + "]"]
    message, _ = _refusal("\n".join(lines) + "\n")
    assert "3.0 MiB of JSON" in message


def test_aliases_stop_at_a_count_of_values() -> None:
    # 2,100 plain values keep go-yaml's ratio happy up to 210,000 values; the cap is 200,000.
    lines = ["pad:"] + [f"  - &p{i} [1, 2]" for i in range(700)]
    lines += ["b1: &b1 [" + ",".join(f"*p{i}" for i in range(700)) + "]"]
    lines += ["b2: [" + ",".join(["*b1"] * 150) + "]"]
    message, _ = _refusal("\n".join(lines) + "\n")
    assert f"more than {MAX_VALUES:,} values" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", 1),  # the scanner would take minutes
        ("x: 1\na: " + "{b: " * 5_000 + "1" + "}" * 5_000 + "\n", 2),
        ("a:\n" + "".join("  " * depth + f"k{depth}:\n" for depth in range(1, 120)), 100),
        ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n", 1),  # a JSON stream
    ],
    ids=["flow", "flow-mappings", "block", "json"],
)
def test_nesting_too_deep_is_refused_at_its_line_quickly(text: str, line: int) -> None:
    message, seconds = _refusal(text)
    assert f"more than {MAX_DEPTH} levels deep" in message
    assert f"f.yaml:{line}:" in message or f"f.yaml:{line}" in message
    assert seconds < 5  # was minutes (flow) or a RecursionError traceback


def test_nesting_up_to_the_limit_is_read() -> None:
    (document,) = parse_yaml("a: " + "[" * 90 + "1" + "]" * 90 + "\n")
    value = document.data["a"]
    for _ in range(89):
        (value,) = value
    assert value == [1]


def test_aliases_nested_in_aliases_count_their_depth() -> None:
    lines = ["a0: &a0 " + "[" * 60 + "1" + "]" * 60]
    lines += [f"a{i}: &a{i} " + "[" * 60 + f"*a{i - 1}" + "]" * 60 for i in range(1, 4)]
    message, _ = _refusal("\n".join(lines) + "\n")
    assert f"more than {MAX_DEPTH} levels deep" in message


def test_a_file_or_document_bigger_than_read_is_refused_before_parsing() -> None:
    huge = "a: " + "x" * MAX_FILE_BYTES + "\n"
    for read in (lambda: parse_yaml(huge, "f.yaml"), lambda: decode_text(huge.encode(), "f.yaml")):
        started = time.perf_counter()
        with pytest.raises(SpecError) as caught:
            read()
        assert "larger than the 8.0 MiB Phalanx reads" in caught.value.render()
        assert time.perf_counter() - started < 1
    document = "a: " + "x" * MAX_DOCUMENT_BYTES + "\n"
    message, seconds = _refusal("b: 1\n---\n" + document)
    assert "f.yaml:3" in message and "refuses an object over 3.0 MiB" in message
    assert seconds < 1
