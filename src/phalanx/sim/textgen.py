"""Deterministic output text: pseudo-words from a seeded RNG, and stop-string handling."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from phalanx.sim.tokenizer import piece_id

_ONSETS = ("b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "st", "tr", "pl")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea")
_CODAS = ("", "", "n", "s", "r", "l", "m", "t")


def derive_seed(*parts: object) -> int:
    """A stable 64-bit seed from any printable parts (never `hash()`, which is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class TokenSource:
    """Yields (token id, text piece) pairs; each piece is one pseudo-word of at most six letters,
    so re-tokenizing the output text gives back the same number of tokens."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._count = 0

    def next_token(self) -> tuple[int, str]:
        rng = self._rng
        word = rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        word = word[:6]
        self._count += 1
        # Roughly one sentence per dozen words keeps the text readable in logs and demos.
        piece = (" " + word) if self._count % 12 else "."
        return piece_id(piece), piece


class StopMatcher:
    """Accumulates output text, holds back a possible stop-string prefix, and finds stop strings.

    Holding back `len(longest stop) - 1` characters means text already streamed never has to be
    taken back when a stop string spans two tokens, as vLLM's detokenizer does.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self.text = ""
        self._emitted = 0
        self.matched: str | None = None

    def feed(self, piece: str) -> str:
        """Add a piece; return the text that can be released now (stops at a matched stop string)."""
        if self.matched is not None:
            return ""
        start = max(0, len(self.text) - self._hold)
        self.text += piece
        best: tuple[int, str] | None = None
        for stop in self._stop:
            index = self.text.find(stop, start)
            if index >= 0 and (best is None or index < best[0]):
                best = (index, stop)
        if best is not None:
            self.text = self.text[: best[0]]
            self.matched = best[1]
            return self.flush()
        release_to = max(self._emitted, len(self.text) - self._hold)
        delta = self.text[self._emitted : release_to]
        self._emitted = release_to
        return delta

    def flush(self) -> str:
        """Release everything held back (the sequence finished)."""
        delta = self.text[self._emitted :]
        self._emitted = len(self.text)
        return delta
