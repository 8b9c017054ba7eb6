"""A prefill engine's backlog in time: the prompt tokens it still has to compute, over its rate.

Pure: the router keeps one `PrefillBacklog` per prefill endpoint and replaces it on every prefill
step it sends (`sent`) and every answer (`finished`). Request counts are a poor measure of a
prefill queue (one 32k-token prompt is seconds of work, a 256-token one milliseconds), so the
wait is estimated in tokens:

- the tokens of every prompt this router sent and that is not answered yet, less what the
  engine has probably computed of the oldest one since it began (engines prefill in arrival
  order: it began when it was sent or when the one before it was answered, the later);
- plus the requests the engine reports waiting beyond those (another router's), each assumed as
  long as the prompts this router sent it on average;
- over the engine's prefill rate, an exponentially weighted mean of the tokens per second of its
  answered steps, each timed from when it began (as above) to its answer, so time queued behind
  another prompt is not counted as slowness. Until an answer is seen, `PdConfig`'s prior holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final

# Weight of the newest prefill step in the learned rate: about the last five steps count, so a
# change of load (batching) shows within a few requests, and one odd step moves it by a fifth.
RATE_WEIGHT: Final = 0.2


@dataclass(frozen=True, slots=True)
class Pending:
    """One prefill step sent and not answered: a key unique in the router, its prompt tokens, when."""

    key: int
    tokens: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class PrefillBacklog:
    """What one prefill endpoint owes this router, and how fast it has been computing.

    `pending` is in sending order; `last_done` when its latest step was answered; `rate` tokens
    per second (None until an answer is seen); `mean_tokens` the mean prompt sent to it."""

    pending: tuple[Pending, ...] = ()
    last_done: float | None = None
    rate: float | None = None
    mean_tokens: float | None = None


def sent(backlog: PrefillBacklog, key: int, tokens: int, now: float) -> PrefillBacklog:
    """A prefill step of `tokens` prompt tokens was sent at `now`."""
    tokens = max(tokens, 0)
    mean = tokens if backlog.mean_tokens is None else _ewma(backlog.mean_tokens, tokens)
    return replace(backlog, pending=(*backlog.pending, Pending(key, tokens, now)), mean_tokens=mean)


def finished(backlog: PrefillBacklog, key: int, now: float, ok: bool) -> PrefillBacklog:
    """The step `key` was answered at `now` (`ok`: with the prefill done) or given up on.

    A failed step teaches nothing about the rate (a timeout or a refusal is not computing), but
    it leaves the backlog. An unknown key changes nothing."""
    step = next((p for p in backlog.pending if p.key == key), None)
    if step is None:
        return backlog
    pending = tuple(p for p in backlog.pending if p.key != key)
    if not ok:
        return replace(backlog, pending=pending)
    began = step.sent_at if backlog.last_done is None else max(step.sent_at, backlog.last_done)
    took = now - began
    rate = backlog.rate
    if step.tokens > 0 and took > 0:
        sample = step.tokens / took
        rate = sample if rate is None else _ewma(rate, sample)
    return PrefillBacklog(pending, now, rate, backlog.mean_tokens)


def rate_or(backlog: PrefillBacklog, prior: float) -> float:
    """The learned rate, else `prior` (tokens per second)."""
    return backlog.rate if backlog.rate is not None else prior


def estimated_wait(
    backlog: PrefillBacklog, waiting: float | None, now: float, prior_rate: float, tokens: int
) -> float:
    """Seconds a prompt sent now would wait before the engine begins it.

    `waiting` is the engine's `vllm:num_requests_waiting` (None, NaN, infinite or negative:
    unknown, read as none beyond this router's); `tokens` the new prompt's, assumed for another
    router's waiting requests while this one has sent none here."""
    rate = rate_or(backlog, prior_rate)
    owed = float(sum(p.tokens for p in backlog.pending))
    if backlog.pending:
        head = backlog.pending[0]
        began = head.sent_at if backlog.last_done is None else max(head.sent_at, backlog.last_done)
        owed -= min(float(head.tokens), rate * max(now - began, 0.0))
    if waiting is not None and math.isfinite(waiting) and waiting > 0:
        others = max(waiting - len(backlog.pending), 0.0)
        owed += others * (backlog.mean_tokens if backlog.mean_tokens is not None else tokens)
    return owed / rate


def _ewma(old: float, new: float) -> float:
    return old + RATE_WEIGHT * (new - old)
