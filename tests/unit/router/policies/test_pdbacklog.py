"""A prefill engine's backlog in time: what it owes, how fast it computes, how long a prompt waits."""

from __future__ import annotations

import pytest

from phalanx.router.policies.pdbacklog import (
    RATE_WEIGHT,
    Pending,
    PrefillBacklog,
    estimated_wait,
    finished,
    rate_or,
    sent,
)

PRIOR = 4000.0


def test_sending_queues_the_step_in_order_and_learns_the_mean_prompt() -> None:
    b = sent(PrefillBacklog(), 1, 1000, 5.0)
    b = sent(b, 2, 3000, 6.0)
    assert b.pending == (Pending(1, 1000, 5.0), Pending(2, 3000, 6.0))
    assert b.mean_tokens == pytest.approx(1000 + RATE_WEIGHT * 2000)
    assert sent(PrefillBacklog(), 3, -5, 0.0).pending == (Pending(3, 0, 0.0),)  # never negative


def test_the_first_answer_replaces_the_prior_then_answers_are_averaged() -> None:
    b = finished(sent(PrefillBacklog(), 1, 8000, 10.0), 1, 12.0, ok=True)
    assert (b.pending, b.last_done, b.rate) == ((), 12.0, 4000.0)
    b = finished(sent(b, 2, 8000, 20.0), 2, 21.0, ok=True)  # 8000 tokens/s this time
    assert b.rate == pytest.approx(4000 + RATE_WEIGHT * 4000)
    assert rate_or(b, PRIOR) == b.rate
    assert rate_or(PrefillBacklog(), PRIOR) == PRIOR


def test_a_step_queued_behind_another_is_timed_from_when_the_other_was_answered() -> None:
    # Both sent at 0; the first answered at 2 s, the second at 3 s: it took 1 s, not 3 s.
    b = sent(sent(PrefillBacklog(), 1, 8000, 0.0), 2, 4000, 0.0)
    b = finished(b, 1, 2.0, ok=True)
    b = finished(b, 2, 3.0, ok=True)
    assert b.rate == pytest.approx(4000 + RATE_WEIGHT * (4000 - 4000))
    # Answers out of order: the one answered first still counts from its own sending.
    c = sent(sent(PrefillBacklog(), 1, 8000, 0.0), 2, 400, 0.0)
    c = finished(c, 2, 0.1, ok=True)
    assert c.rate == pytest.approx(4000.0) and c.pending == (Pending(1, 8000, 0.0),)


def test_a_failed_step_leaves_the_backlog_without_teaching_a_rate() -> None:
    b = finished(sent(PrefillBacklog(), 1, 8000, 0.0), 1, 30.0, ok=False)
    assert (b.pending, b.rate, b.last_done) == ((), None, None)


def test_an_unknown_key_or_an_empty_or_instant_step_changes_nothing_learned() -> None:
    b = sent(PrefillBacklog(), 1, 8000, 0.0)
    assert finished(b, 99, 1.0, ok=True) is b
    empty = finished(sent(PrefillBacklog(), 1, 0, 0.0), 1, 1.0, ok=True)
    assert (empty.rate, empty.last_done) == (None, 1.0)
    instant = finished(sent(PrefillBacklog(), 1, 100, 1.0), 1, 1.0, ok=True)
    assert instant.rate is None


def test_nothing_owed_is_no_wait() -> None:
    assert estimated_wait(PrefillBacklog(), None, 0.0, PRIOR, 5000) == 0.0


def test_the_wait_is_the_owed_tokens_over_the_rate_less_the_oldest_ones_progress() -> None:
    b = sent(sent(PrefillBacklog(), 1, 8000, 0.0), 2, 4000, 0.5)
    assert estimated_wait(b, None, 0.0, PRIOR, 100) == pytest.approx(3.0)
    assert estimated_wait(b, None, 1.0, PRIOR, 100) == pytest.approx(2.0)  # 4000 done of the first
    # Progress is never more than the oldest prompt: the next one has not begun as far as we know.
    assert estimated_wait(b, None, 9.0, PRIOR, 100) == pytest.approx(1.0)
    # The oldest began when the step before it was answered, if that was after it was sent.
    later = PrefillBacklog(pending=(Pending(1, 8000, 0.0),), last_done=1.5)
    assert estimated_wait(later, None, 2.0, PRIOR, 100) == pytest.approx(1.5)
    # Clock readings from before the step began count as no progress.
    assert estimated_wait(later, None, 1.0, PRIOR, 100) == pytest.approx(2.0)


def test_a_learned_rate_is_used_over_the_prior() -> None:
    b = PrefillBacklog(pending=(Pending(1, 8000, 0.0),), rate=16000.0)
    assert estimated_wait(b, None, 0.0, PRIOR, 100) == pytest.approx(0.5)


def test_requests_waiting_beyond_this_routers_count_at_the_mean_prompt() -> None:
    b = PrefillBacklog(pending=(Pending(1, 4000, 0.0),), mean_tokens=2000.0)
    assert estimated_wait(b, 3.0, 0.0, PRIOR, 100) == pytest.approx((4000 + 2 * 2000) / PRIOR)
    assert estimated_wait(b, 1.0, 0.0, PRIOR, 100) == pytest.approx(1.0)  # only this router's
    assert estimated_wait(PrefillBacklog(), 2.0, 0.0, PRIOR, 1000) == pytest.approx(0.5)  # the prompt's own


@pytest.mark.parametrize("waiting", [None, float("nan"), float("inf"), -1.0, 0.0])
def test_an_unknown_or_broken_waiting_gauge_adds_nothing(waiting: float | None) -> None:
    b = PrefillBacklog(pending=(Pending(1, 4000, 0.0),))
    assert estimated_wait(b, waiting, 0.0, PRIOR, 100) == pytest.approx(1.0)
