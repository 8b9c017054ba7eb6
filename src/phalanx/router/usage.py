"""The engine's own token count of a response, read from the bytes the router relays anyway.

vLLM puts `usage` at the end of a completion body, and in the last event of a stream when the
client asked for `stream_options.include_usage`. The router keeps only the tail of what it relays
and reads `total_tokens` from it, so token budgets are charged with what the engine counted.
"""

from __future__ import annotations

import re

TAIL_BYTES = 4096
_TOTAL = re.compile(rb'"total_tokens"\s*:\s*(\d+)')


def total_tokens(tail: bytes) -> int | None:
    """The last `total_tokens` in `tail`, or None when the engine reported none there."""
    found = _TOTAL.findall(tail)
    return int(found[-1]) if found else None


class UsageTap:
    """Keeps the last `TAIL_BYTES` of a relayed body."""

    def __init__(self) -> None:
        self._tail = b""

    def __call__(self, data: bytes) -> None:
        self._tail = (self._tail + data)[-TAIL_BYTES:] if len(data) < TAIL_BYTES else data[-TAIL_BYTES:]

    @property
    def total_tokens(self) -> int | None:
        return total_tokens(self._tail)
