"""`summarize` reads the body through `request_payload`, `parse_request` too: one set of answers."""

from __future__ import annotations

import pytest

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
