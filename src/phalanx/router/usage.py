"""The engine's own token counts of a response, read from the bytes the router relays anyway.

vLLM puts `usage` at the end of a completion body, and in the last event of a stream when the
client asked for `stream_options.include_usage`. The router keeps only the tail of what it relays
and reads the counts from it: token budgets are charged with what the engine counted, and the
per-key usage metrics count it.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

TAIL_BYTES = 4096
_TOTAL = re.compile(rb'"total_tokens"\s*:\s*(\d+)')
_PROMPT = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def _last(pattern: re.Pattern[bytes], tail: bytes) -> int | None:
    found = pattern.findall(tail)
    return int(found[-1]) if found else None


def total_tokens(tail: bytes) -> int | None:
    """The last `total_tokens` in `tail`, or None when the engine reported none there."""
    return _last(_TOTAL, tail)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


def usage(tail: bytes) -> Usage | None:
    """The last `prompt_tokens` and `completion_tokens` in `tail`; None without a prompt count."""
    prompt = _last(_PROMPT, tail)
    if prompt is None:
        return None
    return Usage(prompt, _last(_COMPLETION, tail) or 0)


class UsageTap:
    """Keeps the chunks that hold the last `TAIL_BYTES` of a relayed body: a chunk costs an append,
    the bytes are joined only when the counts are read, once the body is relayed."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def __call__(self, data: bytes) -> None:
        chunks = self._chunks
        chunks.append(data)
        self._size += len(data)
        while self._size - len(chunks[0]) >= TAIL_BYTES:
            self._size -= len(chunks.popleft())

    @property
    def tail(self) -> bytes:
        return b"".join(self._chunks)[-TAIL_BYTES:]

    @property
    def total_tokens(self) -> int | None:
        return total_tokens(self.tail)

    @property
    def usage(self) -> Usage | None:
        return usage(self.tail) if self._chunks else None
