from __future__ import annotations

from typing import Any

import pytest

from phalanx.sim.protocol import GenerationRequest, Limits, RequestError, parse_request
from phalanx.sim.tokenizer import tokenize

LIMITS = Limits(served_model_names=("tiny", "alias"), max_model_len=64, default_max_tokens=16)


def completion(**body: Any) -> GenerationRequest:
    return parse_request({"model": "tiny", "prompt": "hello world", **body}, chat=False, limits=LIMITS)


def error_of(body: Any, *, chat: bool = False) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse_request(body, chat=chat, limits=LIMITS)
    return info.value


def test_completion_defaults() -> None:
    req = completion()
    assert req.prompts == (tuple(tokenize("hello world")),)
    assert req.max_tokens == 16
    assert req.n == 1
    assert not req.stream
    assert req.model == "tiny"


def test_model_may_be_omitted_or_an_alias() -> None:
    assert parse_request({"prompt": "x"}, chat=False, limits=LIMITS).model == "tiny"
    assert completion(model="alias").model == "alias"


def test_default_max_tokens_capped_by_context_and_zero_means_whole_context() -> None:
    long_prompt = " ".join(["w"] * 60)
    assert completion(prompt=long_prompt).max_tokens == 4
    whole = Limits(served_model_names=("tiny",), max_model_len=64, default_max_tokens=0)
    assert parse_request({"prompt": "hi"}, chat=False, limits=whole).max_tokens == 63


def test_batch_and_token_prompts() -> None:
    assert len(completion(prompt=["a b", "c"]).prompts) == 2
    assert completion(prompt=[1, 2, 3]).prompts == ((1, 2, 3),)
    assert completion(prompt=[[1], [2, 3]]).prompts == ((1,), (2, 3))


def test_chat_uses_max_completion_tokens_first() -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    assert parse_request(body, chat=True, limits=LIMITS).max_tokens == 5
    body["max_completion_tokens"] = 7
    assert parse_request(body, chat=True, limits=LIMITS).max_tokens == 7


def test_stream_options() -> None:
    req = completion(stream=True, stream_options={"include_usage": True})
    assert req.stream and req.include_usage and not req.continuous_usage
    err = error_of({"prompt": "x", "stream_options": {"include_usage": True}})
    assert (err.status, err.param) == (400, "stream_options")


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ([1, 2], 400, "body"),
        ({"model": "nope", "prompt": "x"}, 404, "model"),
        ({"model": 3, "prompt": "x"}, 400, "model"),
        ({"model": "tiny"}, 400, "prompt"),
        ({"prompt": ""}, 400, "prompt"),
        ({"prompt": []}, 400, "prompt"),
        ({"prompt": [1, "a"]}, 400, "prompt"),
        ({"prompt": [-1]}, 400, "prompt"),
        ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": "5"}, 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": True}, 400, "max_tokens"),
        ({"prompt": "x", "n": 0}, 400, "n"),
        ({"prompt": "x", "temperature": -1}, 400, "temperature"),
        ({"prompt": "x", "top_p": 2}, 400, "top_p"),
        ({"prompt": "x", "stop": 5}, 400, "stop"),
        ({"prompt": "x", "stream": "yes"}, 400, "stream"),
        ({"prompt": "x", "seed": 1.5}, 400, "seed"),
        ({"prompt": "x", "max_tokens": 64}, 400, "max_tokens"),
        ({"prompt": " ".join(["w"] * 64)}, 400, "messages"),
    ],
)
def test_completion_errors(body: Any, status: int, param: str) -> None:
    err = error_of(body)
    assert (err.status, err.param) == (status, param)


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": "hi"},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": ["x"]},
    ],
)
def test_chat_errors(body: Any) -> None:
    err = error_of(body, chat=True)
    assert (err.status, err.param) == (400, "messages")


def test_context_length_message_has_vllm_wording() -> None:
    err = error_of({"prompt": "a b c", "max_tokens": 62})
    assert err.message.startswith(
        "This model's maximum context length is 64 tokens. However, you requested 65 tokens "
        "(3 in the messages, 62 in the completion)."
    )


def test_too_many_sequences_in_one_request_is_a_clear_400() -> None:
    error = error_of({"model": "tiny", "prompt": ["a", "b"], "n": 600})
    assert error.param == "n"
    assert "at most 1024 sequences" in error.message
