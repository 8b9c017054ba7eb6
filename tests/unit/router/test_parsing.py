"""`summarize`: what the router keeps of a body, and its trip to and from a worker process."""

from __future__ import annotations

import json

import pytest

from phalanx.router.messages import RequestError
from phalanx.router.parsing import (
    Question,
    Summary,
    from_wire,
    question_from_wire,
    question_to_wire,
    summarize,
    to_wire,
)
from phalanx.router.policies import RoutingRequest

ASK = Question({"x-session-id": "conv-1"}, "x-session-id", 32_768, want_tokens=True)


def test_a_body_is_summed_up_as_model_routing_and_token_estimate() -> None:
    body = {"model": "m", "prompt": "abcdefgh", "max_tokens": 10, "cache_salt": "s"}
    summary = summarize(json.dumps(body).encode(), ASK)
    assert summary == Summary(
        "m",
        RoutingRequest("m", prefix_text="abcdefgh", session="conv-1", cache_salt="s"),
        tokens=12,
        prompt_tokens=2,
    )


def test_the_estimate_is_only_made_when_asked_for() -> None:
    summary = summarize(b'{"model": "m", "prompt": "abcdefgh"}', Question({}, "x-session-id", 100, False))
    assert isinstance(summary, Summary) and summary.tokens == 0
    assert summary.prompt_tokens == 2  # always: prefill/decode routing skips prefill for short prompts


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{", 400), (b"[]", 400), (b'{"prompt": "x"}', 400), (b"[" * 100_000, 400)],
)
def test_what_cannot_be_routed_is_a_request_error(body: bytes, status: int) -> None:
    answer = summarize(body, ASK)
    assert isinstance(answer, RequestError) and answer.status == status


@pytest.mark.parametrize(
    "answer",
    [
        Summary("m", RoutingRequest("m", "prompt \ud800 text", "s\udcff", "auto", None), 7, 3),
        Summary("m", RoutingRequest("m"), 0),
        RequestError(400, "The `model` field is required.", param="model"),
        RequestError(503, "retry", headers={"Retry-After": "1"}),
    ],
)
def test_answers_cross_to_another_process_unchanged(answer: Summary | RequestError) -> None:
    assert from_wire(to_wire(answer)) == answer


def test_questions_cross_unchanged_surrogates_included() -> None:
    question = Question({"x-session-id": b"\xff".decode("utf-8", "surrogateescape")}, "x-session-id", 5, True)
    assert question_from_wire(question_to_wire(question)) == question
