"""What routing reads from an OpenAI request: the model, a stable text of the prompt, the session.

The text only has to be stable (the same request renders the same way, a longer conversation
renders as an extension of a shorter one) and bounded; it is never sent anywhere. Malformed
bodies render as much as can be read and never raise: the engine reports what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SESSION_HEADER = "x-session-id"
POLICY_HEADER = "x-routing-policy"
# PolicyConfig().prefix_chars: hashing never looks further, so rendering need not either.
MAX_PREFIX_CHARS = 32_768

# Separators from the ASCII control range, unlikely in prompts (a collision only costs a
# wrong guess about a cache, never a wrong answer).
_MESSAGE_END = "\x1e"
_FIELD = "\x1f"
_PART = "\x1d"
# Token-id prompts start with a mark, so `[1, 2]` never looks like the text "1 2".
_TOKENS = "\x00ids "


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """The routing-relevant part of one request.

    `policy` is a per-request override of the router's policy name (the `x-routing-policy`
    header), None for the router's default. `cache_salt` is vLLM's field of that name: requests
    with different salts never share cached blocks, so prefix hashing starts from it.
    """

    model: str
    prefix_text: str = ""
    session: str | None = None
    policy: str | None = None
    cache_salt: str | None = None


def routing_request(
    payload: Mapping[str, Any],
    headers: Mapping[str, str],
    session_header: str = SESSION_HEADER,
    *,
    policy_header: str = POLICY_HEADER,
    max_chars: int = MAX_PREFIX_CHARS,
) -> RoutingRequest:
    """Read a completions or chat completions body (already parsed JSON) and its headers.

    The session is the `session_header` value, else the body's `user` field. Headers are looked
    up by the given name and its lower-case form (aiohttp's headers are case-insensitive).
    `prefix_text` is cut at `max_chars`; pass `PolicyConfig.prefix_chars`.
    """
    model = payload.get("model")
    salt = payload.get("cache_salt")
    user = payload.get("user")
    session = _header(headers, session_header)
    if session is None and isinstance(user, str) and user:
        session = user
    policy = _header(headers, policy_header)
    # By position, in field order (model, prefix_text, session, policy, cache_salt): a quarter
    # cheaper than by keyword, once per request.
    return RoutingRequest(
        model if isinstance(model, str) else "",
        prompt_text(payload, max_chars),
        session,
        policy.lower() if policy is not None else None,
        salt if isinstance(salt, str) and salt else None,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        return None
    return value.strip() or None


class _Text:
    """Pieces of text up to a budget of characters; `add` says whether there is room left."""

    __slots__ = ("left", "parts")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit

    def add(self, piece: str) -> bool:
        if self.left <= 0:
            return False
        if len(piece) > self.left:
            piece = piece[: self.left]
        self.parts.append(piece)
        self.left -= len(piece)
        return self.left > 0

    def tokens(self, ids: list[Any]) -> bool:
        if not self.add(_TOKENS):
            return False
        # Each id takes at least two characters with its separator.
        return self.add(" ".join(map(str, ids[: self.left // 2 + 1])))


def prompt_text(payload: Mapping[str, Any], max_chars: int = MAX_PREFIX_CHARS) -> str:
    """A stable rendering of the prompt, at most `max_chars` long; "" when there is none.

    - chat `messages`: `tools` (as compact JSON) first, as chat templates put them in the system
      prompt, then per message its role, name, content and tool calls. Content-part lists keep
      text parts; any other part (image, audio, file) becomes a mark with its type and the
      length of its URL or data, so two different images rarely look the same and the image
      bytes are never hashed.
    - completions `prompt`: a string as is; a list of strings (a batch going to one backend)
      joined; token ids (a list of ints, or a list of such lists) as decimal text behind a mark.
    """
    out = _Text(max_chars)
    messages = payload.get("messages")
    if isinstance(messages, list):
        _chat(out, payload.get("tools"), messages)
    else:
        prompt = payload.get("prompt")
        if isinstance(prompt, str):
            out.add(prompt)
        elif isinstance(prompt, list):
            _prompt_list(out, prompt)
    return "".join(out.parts)


def _prompt_list(out: _Text, prompt: list[Any]) -> None:
    if prompt and not isinstance(prompt[0], (str, list)):
        out.tokens(prompt)
        return
    for i, item in enumerate(prompt):
        if i and not out.add(_MESSAGE_END):
            return
        if isinstance(item, str):
            more = out.add(item)
        elif isinstance(item, list):
            more = out.tokens(item)
        else:
            more = out.add(_json(item))
        if not more:
            return


def _chat(out: _Text, tools: Any, messages: list[Any]) -> None:
    if isinstance(tools, list) and tools and not out.add(_json(tools) + _MESSAGE_END):
        return
    for message in messages:
        if not isinstance(message, dict):
            if not out.add(_json(message) + _MESSAGE_END):
                return
            continue
        role = message.get("role")
        name = message.get("name")
        head = role if isinstance(role, str) else ""
        if isinstance(name, str):
            head += _FIELD + name
        if not out.add(head + _FIELD) or not _content(out, message.get("content")):
            return
        tail = ""
        tool_calls = message.get("tool_calls")
        if tool_calls:
            tail += _FIELD + _json(tool_calls)
        tool_call_id = message.get("tool_call_id")
        if isinstance(tool_call_id, str):
            tail += _FIELD + tool_call_id
        if not out.add(tail + _MESSAGE_END):
            return


def _content(out: _Text, content: Any) -> bool:
    if content is None:
        return True
    if isinstance(content, str):
        return out.add(content)
    if not isinstance(content, list):
        return out.add(_json(content))
    return all(out.add(_part(part)) for part in content)


def _part(part: Any) -> str:
    if not isinstance(part, dict):
        return _json(part)
    kind = part.get("type")
    text = part.get("text")
    if kind == "text" and isinstance(text, str):
        return text
    label = kind if isinstance(kind, str) else "part"
    return f"{_PART}{label}:{_payload_size(part.get(label))}{_PART}"


def _payload_size(value: Any) -> int:
    """Length of an image/audio/file part's URL or data: cheap, and differs between most media."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        for key in ("url", "data", "file_data", "file_id"):
            inner = value.get(key)
            if isinstance(inner, str):
                return len(inner)
    return 0


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
