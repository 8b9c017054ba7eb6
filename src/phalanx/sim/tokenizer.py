"""A deterministic stand-in tokenizer: word and punctuation pieces hashed to ids.

Real tokenizers split text into sub-word pieces; words of up to six characters (with their
leading whitespace) give a token count close to a BPE tokenizer's on English text. Ids come
from blake2b, never from `hash()`, so every process and every run agrees on them, which the
prefix cache and any router that hashes prompts rely on.

A piece carries at most `MAX_SPACE` whitespace characters (a longer run is split, as BPE
vocabularies split long runs of spaces), so no piece is longer than `MAX_PIECE_CHARS`: the
length of a text alone bounds its token count from below, and an over-long prompt is refused
without being tokenized.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from typing import Any

VOCAB_SIZE = 32000
MAX_WORD = 6
MAX_SPACE = 16
MAX_PIECE_CHARS = MAX_SPACE + MAX_WORD

_PIECE = re.compile(rf"\s{{0,{MAX_SPACE}}}(?:\w{{1,{MAX_WORD}}}|[^\w\s])|\s{{1,{MAX_SPACE}}}")
# JSON decoding pairs surrogate escapes into one character, so any surrogate left is a lone one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def pieces(text: str) -> list[str]:
    """Split text into pieces; their concatenation is the text."""
    return _PIECE.findall(text)


def piece_id(piece: str) -> int:
    digest = hashlib.blake2b(piece.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % VOCAB_SIZE


def tokenize(text: str) -> list[int]:
    # One piece at a time, not `findall`: a long text on the parse thread must not hold the GIL
    # (and so the event loop) for the whole of one C call.
    return [piece_id(m.group()) for m in _PIECE.finditer(text)]


def tokenize_within(text: str, keep: int) -> tuple[list[int], int]:
    """The ids of the first `keep` tokens of `text` and its whole token count: tokens past
    `keep` are only counted, never hashed or kept, so a prompt over the context costs no memory."""
    matches = _PIECE.finditer(text)
    ids = [piece_id(m.group()) for m in itertools.islice(matches, keep)]
    return ids, len(ids) + sum(1 for _ in matches)


def fewest_tokens(chars: int) -> int:
    """The least number of tokens a text of `chars` characters can have."""
    return -(-chars // MAX_PIECE_CHARS)


def lone_surrogate(text: str) -> int | None:
    """Where `text` holds a lone UTF-16 surrogate (no valid Unicode text does), else None."""
    found = _SURROGATE.search(text)
    return found.start() if found is not None else None


def message_text(content: Any) -> str:
    """The text of a chat message's `content`: a string or a list of `{"type": "text"}` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def render_chat(messages: Sequence[dict[str, Any]]) -> str:
    """A fixed chat template, so a conversation always yields the same prompt tokens."""
    rendered = [f"<|{m['role']}|>\n{message_text(m.get('content'))}\n" for m in messages]
    return "".join(rendered) + "<|assistant|>\n"
