"""`summarize` reads the body through `request_payload`, `parse_request` too: one set of answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.router.messages import ParsedRequest, RequestError, parse_request, request_payload
from phalanx.router.parsing import Question, Summary, summarize

QUESTION = Question(headers={}, session_header="x-session-id", prefix_chars=1024, want_tokens=True)

BAD = [
    b"{",
    b"\xff",
    b"[]",
    b'"m"',
    b"{}",
    b'{"model": null}',
    b'{"model": ""}',
    b'{"model": 7}',
    b"[" * 100_000,
]


@pytest.mark.parametrize("body", BAD)
def test_a_bad_body_gets_the_same_error_from_each(body: bytes) -> None:
    error = request_payload(body)
    assert isinstance(error, RequestError)
    assert parse_request(body) == error
    assert summarize(body, QUESTION) == error


def test_a_good_body_is_the_whole_object() -> None:
    body = b'{"model": "m", "prompt": "hi", "stream": true, "max_tokens": 3}'
    payload = request_payload(body)
    assert payload == {"model": "m", "prompt": "hi", "stream": True, "max_tokens": 3}
    assert parse_request(body) == ParsedRequest(model="m", stream=True, payload={})  # payload not compared
    summary = summarize(body, QUESTION)
    assert isinstance(summary, Summary)
    assert (summary.model, summary.routing.prefix_text, summary.tokens, summary.prompt_tokens) == (
        "m",
        "hi",
        4,
        1,
    )


def _as_json_loads_reads_it(body: bytes) -> object:
    """What `request_payload` answers, with `json.loads` on the bytes (it detects the encoding)."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        return f"The request body is not valid JSON: {exc}"
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str) or not payload["model"]:
        return "refused"
    return payload


def _answer(body: bytes) -> object:
    got = request_payload(body)
    if isinstance(got, RequestError):
        return got.message if got.message.startswith("The request body is not valid JSON") else "refused"
    return got


@given(st.binary(max_size=12).map(lambda tail: b"{" + tail) | st.binary(max_size=12))
def test_a_body_opening_with_a_brace_is_read_as_json_loads_reads_it(body: bytes) -> None:
    assert _answer(body) == _as_json_loads_reads_it(body)


@pytest.mark.parametrize(
    "body",
    [
        '{"model": "m", "prompt": "\u00e9"}'.encode("utf-16"),
        '{"model": "m"}'.encode("utf-16-le"),
        '{"model": "m"}'.encode("utf-32-be"),
        b'\xef\xbb\xbf{"model": "m"}',
        b'{"model": "m\xff"}',
        b'{"model": "\\ud800"}',
        b'{"model": "m", "prompt": "\xc3\xa9"}',
        b"{\x00",
    ],
)
def test_bodies_in_other_encodings_are_read_as_json_loads_reads_them(body: bytes) -> None:
    assert _answer(body) == _as_json_loads_reads_it(body)


# Bodies built from JSON's own tokens, so most are near-JSON: errors deep inside objects, missing
# values, extra data after the object, whitespace around it.
JSON_PIECES = st.sampled_from(
    [
        '"model"',
        '"m"',
        ":",
        ",",
        "{",
        "}",
        "[",
        "]",
        "1",
        "-0.5e3",
        "null",
        "true",
        " ",
        "\n",
        '"\\u00e9"',
        "x",
    ]
)


@given(st.lists(JSON_PIECES, max_size=14).map(lambda pieces: ("{" + "".join(pieces)).encode()))
def test_a_near_json_body_is_read_as_json_loads_reads_it(body: bytes) -> None:
    assert _answer(body) == _as_json_loads_reads_it(body)
