from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.router.auth import ApiKey
from phalanx.router.ratelimit import (
    Bucket,
    RateLimiter,
    estimate_prompt_tokens,
    estimate_tokens,
    format_duration,
    limit_headers,
)
from phalanx.router.rejection import Rejection

# -- estimates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # 10 chars → 3 tokens, plus max_tokens.
        ({"model": "m", "prompt": "0123456789", "max_tokens": 5}, 8),
        ({"prompt": ["abcd", "efgh"], "max_tokens": 1}, 3),
        # Token ids count one each.
        ({"prompt": [1, 2, 3, 4], "max_tokens": 0}, 4),
        ({"prompt": [[1, 2], [3]], "max_tokens": 0}, 3),
        # No limit given: the default output.
        ({"prompt": "abcd"}, 1 + 256),
        (
            {
                "messages": [
                    {"role": "system", "content": "12345678"},
                    {"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image_url"}]},
                ],
                "max_completion_tokens": 10,
                "max_tokens": 999,
            },
            3 + 10,
        ),
        ({"messages": [{"role": "user", "content": "abcd"}], "max_tokens": 10, "n": 3}, 1 + 30),
        ({"model": "e", "input": ["abcdefgh", "ab"]}, 3),
        ({"model": "e", "input": [7, 8, 9]}, 3),
        # Malformed parts count as nothing; the endpoint rejects them anyway.
        ({"messages": "hi", "max_tokens": True, "n": 0}, 256),
        ([1, 2], 0),
    ],
)
def test_estimate_tokens(payload: object, expected: int) -> None:
    assert estimate_tokens(payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"prompt": "0123456789", "max_tokens": 500}, 3),  # the output does not count
        ({"prompt": [1, 2, 3], "n": 4}, 3),
        ({"messages": [{"role": "user", "content": "12345678"}], "max_completion_tokens": 9}, 2),
        ({"input": ["abcdefgh", "ab"]}, 3),
        ({"prompt": ""}, 0),
        ("not an object", 0),
    ],
)
def test_the_prompt_alone_is_estimated_for_prefill_decode_routing(payload: object, expected: int) -> None:
    assert estimate_prompt_tokens(payload) == expected


def test_estimate_default_output_is_configurable() -> None:
    assert estimate_tokens({"prompt": ""}, default_max_tokens=16) == 16


# -- buckets ---------------------------------------------------------------------------------


def test_a_bucket_refills_its_capacity_per_minute_and_stops_at_full() -> None:
    bucket = Bucket.full(60, now=0.0).take(60)
    assert bucket.level == 0
    assert bucket.at(10.0).level == pytest.approx(10)
    assert bucket.at(600.0).level == 60
    # A clock going backwards refills nothing.
    assert bucket.at(-5.0).level == 0


def test_waiting_and_full_times() -> None:
    bucket = Bucket(120, level=30.0, updated=0.0)  # 2 per second
    assert bucket.wait_s(10) == 0
    assert bucket.wait_s(40) == pytest.approx(5)
    # More than the capacity waits for a full bucket, not forever.
    assert bucket.wait_s(1000) == pytest.approx(45)
    assert bucket.full_in_s() == pytest.approx(45)


def test_taking_more_than_is_there_leaves_a_debt_and_a_refund_stops_at_capacity() -> None:
    bucket = Bucket.full(100, now=0.0)
    assert bucket.take(250).level == -150
    assert bucket.take(-50).level == 100


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.0201, "21ms"),
        (1.0, "1s"),
        (1.54, "1.5s"),
        (59.9, "59.9s"),
        (360, "6m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_duration_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_limit_headers_only_for_the_limits_a_key_has() -> None:
    assert limit_headers(None, None) == {}
    assert limit_headers(Bucket(60, 59.7, 0.0), None) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "300ms",
    }
    assert limit_headers(None, Bucket(1000, -20.0, 0.0))["x-ratelimit-remaining-tokens"] == "0"


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 1000),
    steps=st.lists(st.tuples(st.floats(0, 30), st.integers(-500, 2000)), max_size=30),
)
def test_a_bucket_never_holds_more_than_its_capacity(capacity: int, steps: list[tuple[float, int]]) -> None:
    bucket, now = Bucket.full(capacity, 0.0), 0.0
    for dt, amount in steps:
        now += dt
        bucket = bucket.at(now).take(amount)
        assert bucket.level <= capacity
        assert bucket.at(now + 1e6).level == capacity


# -- the limiter -----------------------------------------------------------------------------


def test_requests_per_minute_is_enforced_with_retry_after_and_headers() -> None:
    limiter = RateLimiter()
    key = ApiKey("alice", requests_per_minute=2)
    first = limiter.admit(key, 100, now=0.0)
    assert first.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "30s",
    }
    limiter.admit(key, 100, now=0.0)
    with pytest.raises(Rejection) as info:
        limiter.admit(key, 100, now=1.0)
    rejection = info.value
    assert rejection.status == 429
    assert rejection.headers["Retry-After"] == "29"
    assert rejection.headers["x-ratelimit-remaining-requests"] == "0"
    body = json.loads(rejection.response().text or "")["error"]
    assert body == {
        "message": "Rate limit reached for API key `alice`: 2 requests per minute; retry in 29 s.",
        "type": "RateLimitError",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    # The rejected attempt took nothing: after the promised wait it goes through.
    limiter.admit(key, 100, now=30.0)


def test_tokens_per_minute_and_the_longer_wait_decides() -> None:
    limiter = RateLimiter()
    key = ApiKey("batch", requests_per_minute=600, tokens_per_minute=600)  # 10 tokens/s
    limiter.admit(key, 500, now=0.0)
    with pytest.raises(Rejection) as info:
        limiter.admit(key, 300, now=0.0)
    assert info.value.headers["Retry-After"] == "20"
    assert "600 tokens per minute" in info.value.message
    assert info.value.headers["x-ratelimit-remaining-requests"] == "599"


def test_a_request_larger_than_the_limit_goes_through_on_a_full_bucket() -> None:
    limiter = RateLimiter()
    key = ApiKey("big", tokens_per_minute=100)
    limiter.admit(key, 1000, now=0.0)
    # It left a debt of 900 tokens: 10 minutes at 100 per minute before even 1 token is back.
    with pytest.raises(Rejection) as info:
        limiter.admit(key, 1, now=60.0)
    assert info.value.headers["Retry-After"] == "481"


def test_settle_gives_back_an_overestimate_and_charges_an_underestimate() -> None:
    limiter = RateLimiter()
    key = ApiKey("k", tokens_per_minute=1000)
    grant = limiter.admit(key, 800, now=0.0)
    assert grant.tokens == 800
    limiter.settle(grant, actual_tokens=100, now=0.0)
    assert limiter.admit(key, 900, now=0.0).headers["x-ratelimit-remaining-tokens"] == "0"
    limiter.settle(limiter.admit(key, 0, now=60.0), actual_tokens=1500, now=60.0)
    with pytest.raises(Rejection):
        limiter.admit(key, 1, now=60.0)


def test_a_key_without_limits_is_never_limited() -> None:
    limiter = RateLimiter()
    key = ApiKey("free")
    for _ in range(1000):
        grant = limiter.admit(key, 10**6, now=0.0)
    assert grant.headers == {}
    limiter.settle(grant, 10**9, now=0.0)


def test_a_changed_limit_applies_at_once_and_retain_forgets_old_keys() -> None:
    limiter = RateLimiter()
    limiter.admit(ApiKey("k", requests_per_minute=100), 0, now=0.0)
    # Lowered to 1: the level is cut to the new capacity, so one more request fits.
    limiter.admit(ApiKey("k", requests_per_minute=1), 0, now=0.0)
    with pytest.raises(Rejection):
        limiter.admit(ApiKey("k", requests_per_minute=1), 0, now=0.0)
    limiter.retain(["other"])
    limiter.admit(ApiKey("k", requests_per_minute=1), 0, now=0.0)


@settings(max_examples=100, deadline=None)
@given(
    rpm=st.integers(1, 120),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=200),
)
def test_admitted_requests_never_exceed_the_burst_plus_the_refill(rpm: int, gaps: list[float]) -> None:
    limiter = RateLimiter()
    key = ApiKey("k", requests_per_minute=rpm)
    now = 0.0
    admitted = 0
    for gap in gaps:
        now += gap
        try:
            limiter.admit(key, 0, now)
            admitted += 1
        except Rejection as rejection:
            assert int(rejection.headers["Retry-After"]) >= 1
    assert admitted <= rpm + now * rpm / 60 + 1e-6
