"""The engine's token count is read from the tail of what the router relays."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from phalanx.router.usage import TAIL_BYTES, Usage, UsageTap, total_tokens, usage


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


def test_prompt_and_completion_counts_of_a_body_and_of_a_stream() -> None:
    body = {"usage": {"prompt_tokens": 5, "total_tokens": 12, "completion_tokens": 7}}
    assert usage(json.dumps(body).encode()) == Usage(5, 7)
    details = {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens": 0}
    last = json.dumps({"choices": [], "usage": details})
    assert usage(f"data: {last}\n\ndata: [DONE]\n\n".encode()) == Usage(9, 0)
    assert usage(b'data: {"choices": []}\n\ndata: [DONE]\n\n') is None  # no include_usage


def test_the_tap_reads_counts_split_across_many_small_writes() -> None:
    assert UsageTap().usage is None
    tap = UsageTap()
    tap(b"z" * (2 * TAIL_BYTES))
    for byte in b'data: {"usage": {"prompt_tokens": 31, "completion_tokens": 4}}\n\n':
        tap(bytes([byte]))
    assert tap.usage == Usage(31, 4)
    assert len(tap.tail) == TAIL_BYTES


_PIECES = st.sampled_from(
    [
        b'"prompt_tokens"',
        b'"completion_tokens"',
        b'"total_tokens"',
        b":",
        b" ",
        b"\n",
        b"7",
        b"42",
        b"x",
        b'"',
        b"null",
    ]
)


@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_the_last_count_is_the_last_match_of_the_pattern(tail: bytes) -> None:
    # The reading from the end agrees with every match found from the start, last one kept.
    for name, read in ((b"total_tokens", total_tokens), (b"prompt_tokens", _prompt)):
        found = re.findall(rb'"%b"\s*:\s*(\d+)' % name, tail)
        assert read(tail) == (int(found[-1]) if found else None)
    completion = re.findall(rb'"completion_tokens"\s*:\s*(\d+)', tail)
    got = usage(tail)
    if got is not None:
        assert got.completion_tokens == (int(completion[-1]) if completion else 0)


def _prompt(tail: bytes) -> int | None:
    got = usage(tail)
    return None if got is None else got.prompt_tokens
