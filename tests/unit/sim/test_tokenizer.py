from __future__ import annotations

import subprocess
import sys
from typing import Any

from phalanx.sim.textgen import StopMatcher, TokenSource, derive_seed
from phalanx.sim.tokenizer import VOCAB_SIZE, pieces, render_chat, tokenize


def test_pieces_rebuild_the_text() -> None:
    text = "Hello,  world! Internationalization is long.\n"
    assert "".join(pieces(text)) == text
    assert pieces("Hello world") == ["Hello", " world"]
    assert pieces("Internationalization") == ["Intern", "ationa", "lizati", "on"]


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
