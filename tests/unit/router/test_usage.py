"""The engine's token count is read from the tail of what the router relays."""

from __future__ import annotations

import json

from phalanx.router.usage import TAIL_BYTES, UsageTap, total_tokens


def test_the_last_total_in_a_body_or_stream_counts() -> None:
    body = json.dumps({"choices": [{"text": "x"}], "usage": {"prompt_tokens": 5, "total_tokens": 12}})
    assert total_tokens(body.encode()) == 12
    stream = (
        b'data: {"usage": {"total_tokens": 3}}\n\ndata: {"usage": {"total_tokens": 40}}\n\ndata: [DONE]\n\n'
    )
    assert total_tokens(stream) == 40
    assert total_tokens(b'data: {"choices": []}\n\ndata: [DONE]\n\n') is None


def test_the_tap_keeps_only_the_tail_across_writes() -> None:
    tap = UsageTap()
    tap(b"x" * (3 * TAIL_BYTES))
    tap(b'{"usage": {"total_tokens"')
    tap(b": 77}}")
    assert tap.total_tokens == 77
    tap(b"y" * TAIL_BYTES)  # the usage scrolled out of the tail
    assert tap.total_tokens is None
