"""A deterministic stand-in tokenizer: word and punctuation pieces hashed to ids.

Real tokenizers split text into sub-word pieces; words of up to six characters (with their
leading whitespace) give a token count close to a BPE tokenizer's on English text. Ids come
from blake2b, never from `hash()`, so every process and every run agrees on them, which the
prefix cache and any router that hashes prompts rely on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

VOCAB_SIZE = 32000

_PIECE = re.compile(r"\s*(?:\w{1,6}|[^\w\s])|\s+$")


def pieces(text: str) -> list[str]:
    """Split text into pieces; their concatenation is the text."""
    return _PIECE.findall(text)


def piece_id(piece: str) -> int:
    digest = hashlib.blake2b(piece.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % VOCAB_SIZE


def tokenize(text: str) -> list[int]:
    return [piece_id(p) for p in pieces(text)]


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
