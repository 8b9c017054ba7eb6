from __future__ import annotations

import subprocess
import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from phalanx.sim.textgen import StopMatcher, TokenSource, derive_seed
from phalanx.sim.tokenizer import (
    MAX_PIECE_CHARS,
    VOCAB_SIZE,
    fewest_tokens,
    lone_surrogate,
    pieces,
    render_chat,
    tokenize,
    tokenize_within,
)


def test_pieces_rebuild_the_text() -> None:
    text = "Hello,  world! Internationalization is long.\n"
    assert "".join(pieces(text)) == text
    assert pieces("Hello world") == ["Hello", " world"]
    assert pieces("Internationalization") == ["Intern", "ationa", "lizati", "on"]


def test_a_long_run_of_whitespace_is_split() -> None:
    assert [len(p) for p in pieces(" " * 40 + "word")] == [16, 16, 12]
    assert [len(p) for p in pieces("a" + "\n" * 20)] == [1, 16, 4]


# Text with long runs of whitespace and word characters, the two things a piece is made of.
PARTS = [" ", "\n", "\t", "a", "é", "7", "_", ",", "😀", " " * 30, "x" * 20]
texts = st.lists(st.sampled_from(PARTS), max_size=60).map("".join)


@given(st.one_of(st.text(), texts))
def test_pieces_are_bounded_so_length_bounds_the_token_count(text: str) -> None:
    found = pieces(text)
    assert "".join(found) == text
    assert all(0 < len(p) <= MAX_PIECE_CHARS for p in found)
    assert len(found) >= fewest_tokens(len(text))


@given(st.one_of(st.text(), texts), st.integers(0, 30))
def test_tokenize_within_keeps_a_prefix_and_counts_the_rest(text: str, keep: int) -> None:
    ids, count = tokenize_within(text, keep)
    assert ids == tokenize(text)[:keep]
    assert count == len(pieces(text))


def test_lone_surrogates_are_found() -> None:
    assert lone_surrogate("fine 😀") is None
    assert lone_surrogate("ab\ud800") == 2
    assert lone_surrogate("\udfff") == 0


def test_token_ids_are_stable_across_processes() -> None:
    text = "The quick brown fox, jumps."
    ids = tokenize(text)
    assert all(0 <= i < VOCAB_SIZE for i in ids)
    code = f"from phalanx.sim.tokenizer import tokenize; print(tokenize({text!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert out.stdout.strip() == str(ids)


def test_chat_template_is_fixed() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    assert render_chat(messages) == "<|system|>\nbe brief\n<|user|>\nhi\n<|assistant|>\n"


def test_token_source_is_deterministic_and_retokenizes_to_one_token_per_piece() -> None:
    a, b = TokenSource(derive_seed(0, (1, 2), None, 0)), TokenSource(derive_seed(0, (1, 2), None, 0))
    out_a = [a.next_token() for _ in range(50)]
    assert out_a == [b.next_token() for _ in range(50)]
    text = "".join(piece for _, piece in out_a)
    assert len(tokenize(text)) == 50
    other = TokenSource(derive_seed(0, (1, 2), 7, 0))
    assert [other.next_token() for _ in range(50)] != out_a


def test_stop_matcher_holds_back_a_possible_stop_prefix() -> None:
    m = StopMatcher(["END"])
    assert m.feed(" aE") == " "
    assert m.feed("N") == "a"
    assert m.feed("D tail") == ""
    assert m.matched == "END"
    assert m.text == " a"


def test_stop_matcher_releases_everything_on_flush() -> None:
    m = StopMatcher(["xyz"])
    assert m.feed(" abc") == " a"
    assert m.flush() == "bc"
    assert m.matched is None
    assert StopMatcher([]).feed(" word") == " word"


def test_stop_matcher_earliest_stop_wins() -> None:
    m = StopMatcher(["lo", "hel"])
    m.feed("say hello")
    assert m.matched == "hel"
    assert m.text == "say "
