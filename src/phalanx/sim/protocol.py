"""Validate OpenAI completion and chat bodies into a `GenerationRequest`; pure, no I/O.

Every problem becomes a `RequestError` carrying the HTTP status, vLLM's message and the
offending field, so the server can answer it as an OpenAI-style error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from phalanx.sim.tokenizer import VOCAB_SIZE, render_chat, tokenize

_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


# The simulator builds every sequence on its event loop; beyond this one request would stall
# /health long enough for a liveness probe to kill the pod. vLLM has no such limit.
MAX_SEQUENCES_PER_REQUEST = 1024


@dataclass(frozen=True)
class Limits:
    served_model_names: tuple[str, ...]
    max_model_len: int
    default_max_tokens: int  # 0: the rest of the context, as vLLM


@dataclass(frozen=True)
class GenerationRequest:
    chat: bool
    model: str
    prompts: tuple[tuple[int, ...], ...]  # one per prompt of a batch; chat has exactly one
    max_tokens: int
    n: int
    stop: tuple[str, ...]
    seed: int | None
    stream: bool
    include_usage: bool
    continuous_usage: bool


def _bad(message: str, param: str) -> RequestError:
    return RequestError(400, message, param)


def _optional_int(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer, got {value!r}", name)
    if value < minimum:
        raise _bad(f"{name} must be at least {minimum}, got {value}", name)
    return value


def _optional_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{name} must be a number, got {value!r}", name)
    if not low <= value <= high:
        raise _bad(f"{name} must be in [{low}, {high}], got {value}", name)


def _optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{name} must be a boolean, got {value!r}", name)
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise _bad("stop must be a string or a list of strings", "stop")


def _model(body: dict[str, Any], limits: Limits) -> str:
    model = body.get("model")
    if model is None:
        return limits.served_model_names[0]  # vLLM serves the default model when none is named
    if not isinstance(model, str):
        raise _bad("model must be a string", "model")
    if model not in limits.served_model_names:
        raise RequestError(404, f"The model `{model}` does not exist.", "model")
    return model


def _token_ids(value: list[Any], param: str) -> tuple[int, ...]:
    for t in value:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < VOCAB_SIZE:
            raise _bad(f"{param} token ids must be integers in [0, {VOCAB_SIZE})", param)
    return tuple(value)


def _completion_prompts(body: dict[str, Any]) -> tuple[tuple[int, ...], ...]:
    if "prompt" not in body or body["prompt"] is None:
        raise _bad("prompt is required", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, str):
        prompts = [tuple(tokenize(prompt))]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = [tuple(tokenize(p)) for p in prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        prompts = [_token_ids(p, "prompt") for p in prompt]
    elif isinstance(prompt, list) and prompt:
        prompts = [_token_ids(prompt, "prompt")]
    else:
        raise _bad("prompt must be a string, a list of strings or a list of token ids", "prompt")
    if any(not p for p in prompts):
        raise _bad("The prompt cannot be empty.", "prompt")
    return tuple(prompts)


def _chat_prompt(body: dict[str, Any]) -> tuple[int, ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object", "messages")
        if message.get("role") not in _CHAT_ROLES:
            raise _bad(f"messages[{i}].role must be one of {sorted(_CHAT_ROLES)}", "messages")
        content = message.get("content")
        parts_ok = isinstance(content, list) and all(isinstance(p, dict) for p in content)
        if content is not None and not isinstance(content, str) and not parts_ok:
            raise _bad(f"messages[{i}].content must be a string or a list of parts", "messages")
    return tuple(tokenize(render_chat(messages)))


def context_error(max_model_len: int, prompt_tokens: int, max_tokens: int | None) -> RequestError:
    if max_tokens is None or prompt_tokens >= max_model_len:
        return _bad(
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{prompt_tokens} input tokens. Please reduce the length of the input messages.",
            "messages",
        )
    return _bad(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
        "completion). Please reduce the length of the messages or completion.",
        "max_tokens",
    )


def parse_request(body: Any, *, chat: bool, limits: Limits) -> GenerationRequest:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body")
    model = _model(body, limits)
    prompts = (_chat_prompt(body),) if chat else _completion_prompts(body)

    requested = _optional_int(body, "max_completion_tokens", 1) if chat else None
    if requested is None:
        requested = _optional_int(body, "max_tokens", 1)
    n = _optional_int(body, "n", 1) or 1
    if n * len(prompts) > MAX_SEQUENCES_PER_REQUEST:
        raise _bad(
            f"n x prompts is {n * len(prompts)}; the simulator takes at most {MAX_SEQUENCES_PER_REQUEST} "
            "sequences per request.",
            "n",
        )
    seed = _optional_int(body, "seed", -(2**63))
    for name, low, high in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
        ("repetition_penalty", 0.0, math.inf),
    ):
        _optional_number(body, name, low, high)
    stop = _stop(body)
    stream = _optional_bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options must be an object", "stream_options")
    if options and not stream:
        raise _bad("Stream options can only be defined when `stream=True`.", "stream_options")
    options = options or {}

    longest = max(len(p) for p in prompts)
    if requested is not None and longest + requested > limits.max_model_len:
        raise context_error(limits.max_model_len, longest, requested)
    if longest >= limits.max_model_len:
        raise context_error(limits.max_model_len, longest, None)
    max_tokens = requested
    if max_tokens is None:
        room = limits.max_model_len - longest
        max_tokens = min(room, limits.default_max_tokens) if limits.default_max_tokens else room

    return GenerationRequest(
        chat=chat,
        model=model,
        prompts=prompts,
        max_tokens=max_tokens,
        n=n,
        stop=stop,
        seed=seed,
        stream=stream,
        include_usage=_optional_bool(options, "include_usage"),
        continuous_usage=_optional_bool(options, "continuous_usage_stats"),
    )
