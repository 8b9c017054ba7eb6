"""vLLM's response bodies and server-sent-event chunks for completions and chat; pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from phalanx.http.errors import SSE_DONE


@dataclass
class ChoiceResult:
    index: int
    text: str = ""
    finish_reason: str | None = None
    stop_reason: str | None = None


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def completion_response(
    request_id: str, created: int, model: str, choices: list[ChoiceResult], usage_body: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": c.index,
                "text": c.text,
                "logprobs": None,
                "finish_reason": c.finish_reason,
                "stop_reason": c.stop_reason,
                "prompt_logprobs": None,
            }
            for c in choices
        ],
        "usage": usage_body,
        "system_fingerprint": None,
        "kv_transfer_params": None,
    }


def chat_response(
    request_id: str, created: int, model: str, choices: list[ChoiceResult], usage_body: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": c.index,
                "message": {
                    "role": "assistant",
                    "content": c.text,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "tool_calls": [],
                    "reasoning_content": None,
                },
                "logprobs": None,
                "finish_reason": c.finish_reason,
                "stop_reason": c.stop_reason,
            }
            for c in choices
        ],
        "usage": usage_body,
        "prompt_logprobs": None,
        "kv_transfer_params": None,
    }


class StreamEncoder:
    """Turns generation progress into vLLM's SSE events, in vLLM's order:
    chat role chunks, one chunk per token per choice (the last one carries `finish_reason`),
    the usage chunk when `include_usage` is set, then `[DONE]`."""

    def __init__(
        self,
        *,
        chat: bool,
        request_id: str,
        created: int,
        model: str,
        include_usage: bool,
        continuous_usage: bool,
    ) -> None:
        self._chat = chat
        self._head = {
            "id": request_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        self._continuous = continuous_usage and include_usage

    def _chunk(self, choice: dict[str, Any], usage_body: dict[str, Any] | None) -> bytes:
        payload: dict[str, Any] = {**self._head, "choices": [choice]}
        if self._continuous and usage_body is not None:
            payload["usage"] = usage_body
        return sse(payload)

    def start(self, choice_indexes: list[int], usage_body: dict[str, Any]) -> list[bytes]:
        if not self._chat:
            return []
        return [
            self._chunk(
                {
                    "index": i,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                },
                usage_body,
            )
            for i in choice_indexes
        ]

    def token(
        self,
        index: int,
        text: str,
        finish_reason: str | None,
        stop_reason: str | None,
        usage_body: dict[str, Any] | None,
    ) -> bytes:
        choice: dict[str, Any]
        if self._chat:
            choice = {"index": index, "delta": {"content": text}, "logprobs": None}
        else:
            choice = {"index": index, "text": text, "logprobs": None}
        choice["finish_reason"] = finish_reason
        choice["stop_reason"] = stop_reason
        return self._chunk(choice, usage_body)

    def end(self, usage_body: dict[str, Any]) -> list[bytes]:
        events: list[bytes] = []
        if self._include_usage:
            events.append(sse({**self._head, "choices": [], "usage": usage_body}))
        events.append(SSE_DONE)
        return events
