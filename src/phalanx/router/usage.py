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


class _Count:
    """A `"name": <digits>` count in JSON bytes; `last` reads the last one."""

    __slots__ = ("key", "pattern")

    def __init__(self, name: bytes) -> None:
        self.key = b'"%b"' % name
        self.pattern = re.compile(re.escape(self.key) + rb"\s*:\s*(\d+)")

    def last(self, tail: bytes) -> int | None:
        """Tried at each occurrence of the key, last first (a match begins with the key, and
        matches cannot overlap), instead of finding every match and keeping the last."""
        at = tail.rfind(self.key)
        while at >= 0:
            found = self.pattern.match(tail, at)
            if found is not None:
                return int(found[1])
            at = tail.rfind(self.key, 0, at)
        return None


_TOTAL = _Count(b"total_tokens")
_PROMPT = _Count(b"prompt_tokens")
_COMPLETION = _Count(b"completion_tokens")


def total_tokens(tail: bytes) -> int | None:
    """The last `total_tokens` in `tail`, or None when the engine reported none there."""
    return _TOTAL.last(tail)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


def usage(tail: bytes) -> Usage | None:
    """The last `prompt_tokens` and `completion_tokens` in `tail`; None without a prompt count."""
    prompt = _PROMPT.last(tail)
    if prompt is None:
        return None
    return Usage(prompt, _COMPLETION.last(tail) or 0)


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
