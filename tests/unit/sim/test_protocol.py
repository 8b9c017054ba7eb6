from __future__ import annotations

from typing import Any

import pytest

from phalanx.sim import protocol
from phalanx.sim.protocol import GenerationRequest, Limits, RequestError, decode_request, parse_request
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
        {"messages": [{"role": [], "content": "x"}]},  # unhashable: was a TypeError caught only as unforeseen
        {"messages": [{"role": {"a": 1}, "content": "x"}]},
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


@pytest.mark.parametrize(
    ("body", "chat", "where"),
    [
        ({"prompt": "ok \ud800 no"}, False, "prompt holds a lone UTF-16 surrogate (\\ud800 at character 3)"),
        ({"prompt": ["fine", "\udfff"]}, False, "prompt[1] holds a lone UTF-16 surrogate"),
        ({"prompt": "x", "stop": ["a", "\ud801"]}, False, "stop[1] holds a lone UTF-16 surrogate"),
        ({"messages": [{"role": "user", "content": "\ud800"}]}, True, "messages[0].content holds a lone"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a\udc00"}]}]},
            True,
            "messages[0].content[0].text holds a lone",
        ),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_where_it_is(body: Any, chat: bool, where: str) -> None:
    err = error_of(body, chat=chat)
    assert err.status == 400
    assert err.message.startswith(where), err.message


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ({"type": "text", "text": 5}, "messages[0].content[1].text must be a string, got 5"),
        ({"type": "text", "text": ["a"]}, "messages[0].content[1].text must be a string, got ['a']"),
        ({"type": 7, "text": "a"}, "messages[0].content[1].type must be a string, got 7"),
        ("just text", "messages[0].content[1] must be an object, got 'just text'"),
    ],
)
def test_chat_content_parts_are_checked_one_by_one(part: Any, message: str) -> None:
    content = [{"type": "text", "text": "fine"}, part]
    err = error_of({"messages": [{"role": "user", "content": content}]}, chat=True)
    assert (err.status, err.param, err.message) == (400, "messages", message)


def test_a_part_of_another_type_adds_no_text() -> None:
    parts = [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "hi"}]
    with_image = parse_request({"messages": [{"role": "user", "content": parts}]}, chat=True, limits=LIMITS)
    plain = parse_request({"messages": [{"role": "user", "content": "hi"}]}, chat=True, limits=LIMITS)
    assert with_image.prompts == plain.prompts


def test_values_in_messages_are_shown_short() -> None:
    deep: Any = 1
    for _ in range(500):
        deep = [deep]
    err = error_of({"prompt": "x", "max_tokens": deep})
    assert err.message == "max_tokens must be an integer, got [[[[...]]]]"
    err = error_of({"prompt": "x", "max_tokens": "y" * 10_000})
    assert len(err.message) < 120


def test_seed_is_a_64_bit_integer_as_in_vllm() -> None:
    assert completion(seed=2**63 - 1).seed == 2**63 - 1
    assert completion(seed=-(2**63)).seed == -(2**63)
    err = error_of({"prompt": "x", "seed": 2**63})
    assert (err.status, err.param) == (400, "seed")


def test_a_prompt_far_over_the_context_is_refused_from_its_length_alone() -> None:
    # 64 tokens of context; a piece is at most 22 characters, so 10 000 characters are >= 455 tokens.
    err = error_of({"prompt": "a" * 10_000})
    assert err.message == (
        "This model's maximum context length is 64 tokens. However, your request has at least 455 "
        "input tokens. Please reduce the length of the input messages."
    )
    assert error_of({"prompt": "a" * 10_000, "max_tokens": 10}).message == err.message


def test_a_near_miss_is_counted_exactly() -> None:
    err = error_of({"prompt": " w" * 70})
    assert "your request has 70 input tokens" in err.message
    err = error_of({"prompt": [1] * 70})
    assert "your request has 70 input tokens" in err.message
    err = error_of({"messages": [{"role": "user", "content": " w" * 70}]}, chat=True)
    assert "maximum context length is 64 tokens" in err.message


def test_the_context_is_checked_before_each_token_id() -> None:
    assert "maximum context length" in error_of({"prompt": [-1] * 100}).message
    message = error_of({"prompt": [-1] * 10}).message
    assert message == "prompt token ids must be integers in [0, 32000), got -1"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "The request body is not valid JSON: Expecting property name"),
        (b'{"prompt": "\xff"}', "The request body is not valid JSON: 'utf-8' codec can't decode"),
        (b"[" * 100_000 + b"]" * 100_000, "The request body nests arrays or objects too deeply to be read."),
        (b"7", "The request body must be a JSON object."),
    ],
)
def test_decode_request_answers_every_unreadable_body(raw: bytes, message: str) -> None:
    with pytest.raises(RequestError) as info:
        decode_request(raw, chat=False, limits=LIMITS)
    assert (info.value.status, info.value.param) == (400, "body")
    assert info.value.message.startswith(message)


def test_a_client_fault_no_check_saw_is_a_400_and_any_other_bug_stays_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def trips(body: Any, *, chat: bool, limits: Limits) -> GenerationRequest:
        return int(body["prompt"])  # type: ignore[return-value]

    monkeypatch.setattr(protocol, "parse_request", trips)
    with pytest.raises(RequestError) as info:
        decode_request(b'{"prompt": "seven"}', chat=False, limits=LIMITS)
    assert info.value.status == 400
    assert info.value.message.startswith("The request could not be read (ValueError: invalid literal")
    assert isinstance(info.value.unforeseen, ValueError)
    # A KeyError is not among vLLM's client faults: it is a server bug, and the server answers 500.
    with pytest.raises(KeyError):
        decode_request(b'{"other": 1}', chat=False, limits=LIMITS)
