"""Per-API-key request and token limits: token buckets over an injected clock.

A limit of N per minute is a bucket holding N that refills at N/60 per second, so a key may burst
up to its whole minute and then goes at the steady rate. Tokens are not known until the answer
is: a request is charged an estimate when it is admitted (`estimate_tokens`) and the difference
is settled when the real usage is known (`RateLimiter.settle`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from phalanx.router.auth import ApiKey
from phalanx.router.rejection import Rejection

# Output tokens assumed for a chat or completion request that sets neither `max_tokens` nor
# `max_completion_tokens` (the engine's own default is the rest of the context, far too many).
DEFAULT_MAX_TOKENS = 256
CHARS_PER_TOKEN = 4
_EPSILON_S = 1e-6


# -- estimates -------------------------------------------------------------------------------


def _text_chars(value: object) -> tuple[int, int]:
    """(characters, token ids) in a prompt or input: a string, token ids, or lists of either."""
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 0, 1
    if isinstance(value, list):
        chars = ids = 0
        for item in value:
            c, i = _text_chars(item)
            chars, ids = chars + c, ids + i
        return chars, ids
    return 0, 0


def _message_chars(messages: object) -> int:
    """Characters of the text in chat messages: string contents and `text` parts (images and
    other parts are not counted)."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                total += len(text) if isinstance(text, str) else 0
    return total


def estimate_prompt_tokens(payload: object) -> int:
    """The prompt's tokens as the router guesses them: characters / 4 (rounded up), token ids one
    each; of `input` for an embedding request."""
    if not isinstance(payload, dict):
        return 0
    chars, ids = _text_chars(payload.get("prompt"))
    chars += _message_chars(payload.get("messages"))
    if "input" in payload and "prompt" not in payload and "messages" not in payload:
        chars, ids = _text_chars(payload.get("input"))
    return math.ceil(chars / CHARS_PER_TOKEN) + ids


def estimate_tokens(payload: object, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> int:
    """What a request is charged at admission: prompt characters / 4 (rounded up; token ids count
    one each) plus the output it may produce, `max_completion_tokens` or else `max_tokens` (else
    `default_max_tokens`), times `n`. Embeddings (`input`, no `messages` or `prompt`) produce none."""
    if not isinstance(payload, dict):
        return 0
    prompt = estimate_prompt_tokens(payload)
    if "input" in payload and "prompt" not in payload and "messages" not in payload:
        return prompt  # an embedding
    output = default_max_tokens
    for name in ("max_completion_tokens", "max_tokens"):
        value = payload.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            output = value
            break
    n = payload.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1
    return prompt + output * choices


# -- buckets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """`level` of `capacity`, as of `updated`; refills `capacity` per minute. The level goes below
    zero when usage turns out higher than charged: later requests pay that debt off."""

    capacity: int
    level: float
    updated: float

    @classmethod
    def full(cls, capacity: int, now: float) -> Bucket:
        return cls(capacity, float(capacity), now)

    @property
    def per_second(self) -> float:
        return self.capacity / 60.0

    def at(self, now: float) -> Bucket:
        elapsed = max(0.0, now - self.updated)
        return Bucket(self.capacity, min(float(self.capacity), self.level + elapsed * self.per_second), now)

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` may be taken. More than the capacity needs a full bucket (and
        leaves a debt), so an over-estimate delays a request but never refuses it for good."""
        need = min(amount, float(self.capacity))
        return max(0.0, (need - self.level) / self.per_second)

    def full_in_s(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.per_second)

    def take(self, amount: float) -> Bucket:
        return replace(self, level=min(float(self.capacity), self.level - amount))


def format_duration(seconds: float) -> str:
    """OpenAI's style for `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def limit_headers(requests: Bucket | None, tokens: Bucket | None) -> dict[str, str]:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the limits a key has."""
    headers = {}
    for what, bucket in (("requests", requests), ("tokens", tokens)):
        if bucket is None:
            continue
        headers[f"x-ratelimit-limit-{what}"] = str(bucket.capacity)
        headers[f"x-ratelimit-remaining-{what}"] = str(max(0, math.floor(bucket.level)))
        headers[f"x-ratelimit-reset-{what}"] = format_duration(bucket.full_in_s())
    return headers


@dataclass(frozen=True)
class Grant:
    """An admitted request: who was charged, how many tokens, and the headers for its answer."""

    key: str
    tokens: int
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Buckets:
    requests: Bucket | None
    tokens: Bucket | None


def _resized(bucket: Bucket | None, capacity: int | None, now: float) -> Bucket | None:
    """The bucket for a limit that may have changed since (a key file reload)."""
    if capacity is None:
        return None
    if bucket is None:
        return Bucket.full(capacity, now)
    current = bucket.at(now)
    if current.capacity == capacity:
        return current
    return Bucket(capacity, min(current.level, float(capacity)), now)


class RateLimiter:
    """The buckets of every key seen, by key name. Pure over `now`: the caller passes the clock."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Buckets] = {}

    def _current(self, key: ApiKey, now: float) -> _Buckets:
        old = self._buckets.get(key.name, _Buckets(None, None))
        return _Buckets(
            _resized(old.requests, key.requests_per_minute, now),
            _resized(old.tokens, key.tokens_per_minute, now),
        )

    def admit(self, key: ApiKey, tokens: int, now: float) -> Grant:
        """Charge one request and `tokens` estimated tokens, or raise `Rejection` 429
        (`rate_limit_exceeded`, with `Retry-After` and the `x-ratelimit-*` headers)."""
        current = self._current(key, now)
        waits = []
        if current.requests is not None:
            waits.append((current.requests.wait_s(1), "requests", current.requests.capacity))
        if current.tokens is not None:
            waits.append((current.tokens.wait_s(tokens), "tokens", current.tokens.capacity))
        self._buckets[key.name] = current
        wait, what, limit = max(waits, default=(0.0, "", 0))
        # The tolerance keeps float noise from refusing a request that is exactly due.
        if wait > _EPSILON_S:
            retry = max(1, math.ceil(wait - _EPSILON_S))
            headers = limit_headers(current.requests, current.tokens)
            headers["Retry-After"] = str(retry)
            raise Rejection(
                429,
                f"Rate limit reached for API key `{key.name}`: {limit} {what} per minute; "
                f"retry in {retry} s.",
                code="rate_limit_exceeded",
                headers=headers,
            )
        charged = _Buckets(
            current.requests.take(1) if current.requests is not None else None,
            current.tokens.take(tokens) if current.tokens is not None else None,
        )
        self._buckets[key.name] = charged
        return Grant(key.name, tokens, limit_headers(charged.requests, charged.tokens))

    def settle(self, grant: Grant, actual_tokens: int, now: float) -> None:
        """Correct the charge of an admitted request by its real usage (`usage.total_tokens`):
        the difference is taken from or given back to the key's token bucket."""
        current = self._buckets.get(grant.key)
        if current is None or current.tokens is None:
            return
        tokens = current.tokens.at(now).take(actual_tokens - grant.tokens)
        self._buckets[grant.key] = replace(current, tokens=tokens)

    def retain(self, names: Iterable[str]) -> None:
        """Forget the buckets of keys no longer configured (after a reload)."""
        keep = set(names)
        for name in [n for n in self._buckets if n not in keep]:
            del self._buckets[name]
