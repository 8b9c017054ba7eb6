"""Validate OpenAI completion and chat bodies into a `GenerationRequest`; pure, no I/O.

Every problem becomes a `RequestError` carrying the HTTP status, vLLM's message and the
offending field, so the server can answer it as an OpenAI-style error.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import dataclass
from typing import Any

from phalanx.sim.tokenizer import VOCAB_SIZE, fewest_tokens, lone_surrogate, render_chat, tokenize_within

_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class RequestError(Exception):
    def __init__(
        self, status: int, message: str, param: str | None = None, *, unforeseen: Exception | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.unforeseen = unforeseen  # a failure on client input that no check named: worth a check


# What vLLM answers as a client error (400) when it escapes request processing; here only
# while the body is read, so the same exception from the engine or a response stays a 500.
CLIENT_FAULTS = (ValueError, TypeError, OverflowError, RecursionError)


# The simulator builds every sequence on its event loop; beyond this one request would stall
# /health long enough for a liveness probe to kill the pod. vLLM has no such limit.
MAX_SEQUENCES_PER_REQUEST = 1024


@dataclass(frozen=True)
class Limits:
    served_model_names: tuple[str, ...]
    max_model_len: int
    default_max_tokens: int  # 0: the rest of the context, as vLLM


@dataclass(frozen=True)
class Bootstrap:
    """SGLang's disaggregation fields: where the prefill engine's bootstrap server listens and the
    room both requests of a pair name."""

    host: str
    port: int
    room: int


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
    kv_transfer_params: dict[str, Any] | None = None  # vLLM's disaggregation field, as sent
    bootstrap: Bootstrap | None = None


def _bad(message: str, param: str) -> RequestError:
    return RequestError(400, message, param)


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60
_SHORT.maxlevel = 3


def show(value: Any) -> str:
    """A value for an error message: short and flat whatever the client sent."""
    try:
        return _SHORT.repr(value)
    except ValueError:  # an integer too long to print
        return f"<{type(value).__name__}>"


def _optional_int(body: dict[str, Any], name: str, minimum: int, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{name} must be an integer, got {show(value)}", name)
    if value < minimum:
        raise _bad(f"{name} must be at least {minimum}, got {show(value)}", name)
    if maximum is not None and value > maximum:
        raise _bad(f"{name} must be at most {maximum}, got {show(value)}", name)
    return value


def _optional_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{name} must be a number, got {show(value)}", name)
    if not low <= value <= high:
        raise _bad(f"{name} must be in [{low}, {high}], got {value}", name)


def _optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"{name} must be a boolean, got {show(value)}", name)
    return value


def _checked_text(text: str, param: str, where: str) -> str:
    at = lone_surrogate(text)
    if at is not None:
        raise _bad(
            f"{where} holds a lone UTF-16 surrogate (\\u{ord(text[at]):04x} at character {at}), which is "
            "not Unicode text; send the text as valid UTF-8.",
            param,
        )
    return text


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (_checked_text(value, "stop", "stop"),)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(_checked_text(s, "stop", f"stop[{i}]") for i, s in enumerate(value))
    raise _bad("stop must be a string or a list of strings", "stop")


def _model(body: dict[str, Any], limits: Limits) -> str:
    model = body.get("model")
    if model is None:
        return limits.served_model_names[0]  # vLLM serves the default model when none is named
    if not isinstance(model, str):
        raise _bad("model must be a string", "model")
    if model not in limits.served_model_names:
        raise RequestError(404, f"The model `{show(model)[1:-1]}` does not exist.", "model")
    return model


def context_error(
    max_model_len: int, prompt_tokens: int, max_tokens: int | None, *, at_least: bool = False
) -> RequestError:
    """vLLM's answer to a request over the context; `at_least` when the prompt was measured by
    its length alone, without being tokenized."""
    if max_tokens is None or prompt_tokens >= max_model_len:
        least = "at least " if at_least else ""
        return _bad(
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{least}{prompt_tokens} input tokens. Please reduce the length of the input messages.",
            "messages",
        )
    return _bad(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
        "completion). Please reduce the length of the messages or completion.",
        "max_tokens",
    )


@dataclass(frozen=True)
class _Context:
    """The room a prompt has: checked before a prompt is tokenized (from its length) and after."""

    max_model_len: int
    requested: int | None

    def check(self, prompt_tokens: int) -> None:
        if self.requested is not None and prompt_tokens + self.requested > self.max_model_len:
            raise context_error(self.max_model_len, prompt_tokens, self.requested)
        if prompt_tokens >= self.max_model_len:
            raise context_error(self.max_model_len, prompt_tokens, None)


def _text_tokens(text: str, param: str, where: str, context: _Context) -> tuple[int, ...]:
    fewest = fewest_tokens(len(text))
    if fewest >= 2 * context.max_model_len:
        # Far over: refused from its length alone, before any work proportional to it. A near
        # miss is tokenized (bounded work still), so its answer gives the exact count.
        raise context_error(context.max_model_len, fewest, None, at_least=True)
    ids, count = tokenize_within(_checked_text(text, param, where), context.max_model_len)
    context.check(count)
    return tuple(ids)


def _token_ids(value: list[Any], param: str, context: _Context) -> tuple[int, ...]:
    context.check(len(value))
    for t in value:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < VOCAB_SIZE:
            raise _bad(f"{param} token ids must be integers in [0, {VOCAB_SIZE}), got {show(t)}", param)
    return tuple(value)


def _completion_batch(body: dict[str, Any]) -> list[Any]:
    """The prompts of a completion body, each a string or a list of token ids, unchecked."""
    if "prompt" not in body or body["prompt"] is None:
        raise _bad("prompt is required", "prompt")
    prompt = body["prompt"]
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt) or all(isinstance(p, list) for p in prompt):
            return prompt
        return [prompt]
    raise _bad("prompt must be a string, a list of strings or a list of token ids", "prompt")


def _completion_prompt(prompt: Any, where: str, context: _Context) -> tuple[int, ...]:
    tokens = (
        _text_tokens(prompt, "prompt", where, context)
        if isinstance(prompt, str)
        else _token_ids(prompt, "prompt", context)
    )
    if not tokens:
        raise _bad("The prompt cannot be empty.", "prompt")
    return tokens


def _content(content: Any, where: str) -> None:
    if content is None or isinstance(content, str):
        if content:
            _checked_text(content, "messages", where)
        return
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of parts, got {show(content)}", "messages")
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"{where}[{j}] must be an object, got {show(part)}", "messages")
        kind = part.get("type")
        if kind is not None and not isinstance(kind, str):
            raise _bad(f"{where}[{j}].type must be a string, got {show(kind)}", "messages")
        if "text" in part:
            text = part["text"]
            if not isinstance(text, str):
                raise _bad(f"{where}[{j}].text must be a string, got {show(text)}", "messages")
            _checked_text(text, "messages", f"{where}[{j}].text")


def _chat_prompt(body: dict[str, Any], context: _Context) -> tuple[int, ...]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _bad(f"messages[{i}] must be an object", "messages")
        role = message.get("role")
        if not isinstance(role, str) or role not in _CHAT_ROLES:  # a list or an object is not hashable
            raise _bad(f"messages[{i}].role must be one of {sorted(_CHAT_ROLES)}", "messages")
        _content(message.get("content"), f"messages[{i}].content")
    return _text_tokens(render_chat(messages), "messages", "messages", context)


def _kv_transfer_params(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("kv_transfer_params")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(f"kv_transfer_params must be an object, got {show(value)}", "kv_transfer_params")
    return value


def _bootstrap(body: dict[str, Any]) -> Bootstrap | None:
    names = ("bootstrap_host", "bootstrap_port", "bootstrap_room")
    if all(body.get(name) is None for name in names):
        return None
    host, port, room = (body.get(name) for name in names)
    if not isinstance(host, str) or not host:
        raise _bad(f"bootstrap_host must be a host name or address, got {show(host)}", "bootstrap_host")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _bad(f"bootstrap_port must be a TCP port (1..65535), got {show(port)}", "bootstrap_port")
    if isinstance(room, bool) or not isinstance(room, int) or not 0 <= room < 2**63:
        raise _bad(f"bootstrap_room must be an integer in [0, 2^63), got {show(room)}", "bootstrap_room")
    return Bootstrap(host, port, room)


def parse_request(body: Any, *, chat: bool, limits: Limits) -> GenerationRequest:
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", "body")
    model = _model(body, limits)
    batch = [body] if chat else _completion_batch(body)

    requested = _optional_int(body, "max_completion_tokens", 1) if chat else None
    if requested is None:
        requested = _optional_int(body, "max_tokens", 1)
    n = _optional_int(body, "n", 1) or 1
    if n * len(batch) > MAX_SEQUENCES_PER_REQUEST:
        raise _bad(
            f"n x prompts is {n * len(batch)}; the simulator takes at most {MAX_SEQUENCES_PER_REQUEST} "
            "sequences per request.",
            "n",
        )
    seed = _optional_int(body, "seed", -(2**63), 2**63 - 1)  # vLLM's bounds: a 64-bit integer
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
    kv_transfer_params = _kv_transfer_params(body)
    bootstrap = _bootstrap(body)
    if (kv_transfer_params is not None or bootstrap is not None) and (n > 1 or len(batch) > 1):
        raise _bad(
            "a disaggregated request (kv_transfer_params or bootstrap_*) takes one prompt and n=1; "
            "send each prompt and choice as its own request.",
            "n" if n > 1 else "prompt",
        )

    # Every other field is checked first, so an over-long prompt is refused before it is tokenized.
    context = _Context(limits.max_model_len, requested)
    if chat:
        prompts: tuple[tuple[int, ...], ...] = (_chat_prompt(body, context),)
    else:
        where = "prompt" if len(batch) == 1 else "prompt[{}]"
        prompts = tuple(_completion_prompt(p, where.format(i), context) for i, p in enumerate(batch))
    max_tokens = requested
    if max_tokens is None:
        room = limits.max_model_len - max(len(p) for p in prompts)
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
        kv_transfer_params=kv_transfer_params,
        bootstrap=bootstrap,
    )


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def decode_request(raw: bytes, *, chat: bool, limits: Limits) -> GenerationRequest:
    """A request body as the client sent it, read into a request: every way the body can be
    wrong ends as a RequestError, never as another exception."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise _bad("The request body nests arrays or objects too deeply to be read.", "body") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise _bad(f"The request body is not valid JSON: {_cut(str(exc))}", "body") from None
    try:
        return parse_request(body, chat=chat, limits=limits)
    except RequestError:
        raise
    except CLIENT_FAULTS as exc:
        # The body made a check fail in a way no check foresaw: still the client's request at fault.
        message = f"The request could not be read ({type(exc).__name__}: {_cut(str(exc))})."
        raise RequestError(400, message, None, unforeseen=exc) from exc
