"""What routing needs from a request body: parsed once, kept small, and sent between processes.

`summarize` is pure: it parses the JSON, checks the model, and keeps only what the router uses
later (the model, the `RoutingRequest`, the token estimate), so the parsed body is garbage as soon
as it returns. The parse is the one thing a request can make expensive: Python objects take up to
thirty times the bytes of the JSON they come from (`[{},{},...]`), and `json.loads` holds the GIL
throughout, so a thread would stall the event loop as much as parsing on it (measured in
`bench/router/hostile.py`). Large bodies are therefore summarized in worker processes
(`parsepool`); `to_wire` and `from_wire` carry a summary back from one as JSON.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from phalanx.router.messages import RequestError, request_payload
from phalanx.router.policies import RoutingRequest, routing_request
from phalanx.router.ratelimit import estimate_prompt_tokens, estimate_tokens


@dataclass(frozen=True, slots=True)
class Summary:
    """All the router keeps of a parsed body."""

    model: str
    routing: RoutingRequest
    tokens: int  # the rate limiter's estimate; 0 when not asked for
    prompt_tokens: int = 0  # the prompt alone, estimated (prefill/decode: short prompts skip prefill)


@dataclass(frozen=True)
class Question:
    """What `summarize` needs besides the body; `headers` only the session and policy ones."""

    headers: Mapping[str, str]
    session_header: str
    prefix_chars: int
    want_tokens: bool


def summarize(body: bytes, question: Question) -> Summary | RequestError:
    """Parse `body` and read the model, the routing fields and (when asked) the token estimate."""
    try:
        payload = request_payload(body)  # without a ParsedRequest: 10 % of this function
        if isinstance(payload, RequestError):
            return payload
        routing = routing_request(
            payload, question.headers, question.session_header, max_chars=question.prefix_chars
        )
        tokens = estimate_tokens(payload) if question.want_tokens else 0
        prompt_tokens = estimate_prompt_tokens(payload)
    except RecursionError:  # a prompt list or tool nested deeper than the stack allows
        return RequestError(400, "The request body is not valid JSON: it is nested too deeply.")
    except MemoryError:  # in a worker, whose address space is capped
        return RequestError(
            413,
            "The request body holds too many JSON values to parse within the router's memory "
            "limit; send a simpler request, or raise RouterConfig.parse_memory_bytes.",
        )
    return Summary(payload["model"], routing, tokens, prompt_tokens)


# -- between processes -----------------------------------------------------------------------
# A question is QUESTION_HEAD (its length) and `question_to_wire`, then BODY_HEAD and the body; an
# answer is ANSWER_HEAD and `to_wire`. JSON with ASCII escapes, so lone surrogates (from a JSON
# `\udXXX`, or header bytes that were not UTF-8) survive the round trip.

QUESTION_HEAD = struct.Struct(">I")
BODY_HEAD = struct.Struct(">Q")
ANSWER_HEAD = struct.Struct(">I")


def question_to_wire(question: Question) -> bytes:
    return json.dumps(asdict(question) | {"headers": dict(question.headers)}).encode()


def question_from_wire(data: bytes) -> Question:
    fields: dict[str, Any] = json.loads(data)
    return Question(**fields)


def to_wire(answer: Summary | RequestError) -> bytes:
    if isinstance(answer, RequestError):
        error = {"status": answer.status, "message": answer.message, "param": answer.param}
        return json.dumps({"error": error | {"headers": dict(answer.headers)}}).encode()
    routing = {
        "model": answer.routing.model,
        "prefix_text": answer.routing.prefix_text,
        "session": answer.routing.session,
        "policy": answer.routing.policy,
        "cache_salt": answer.routing.cache_salt,
    }
    found = {"model": answer.model, "routing": routing, "tokens": answer.tokens}
    return json.dumps(found | {"prompt_tokens": answer.prompt_tokens}).encode()


def from_wire(data: bytes) -> Summary | RequestError:
    found: dict[str, Any] = json.loads(data)
    if "error" in found:
        return RequestError(**found["error"])
    routing = RoutingRequest(**found["routing"])
    return Summary(found["model"], routing, found["tokens"], found["prompt_tokens"])
