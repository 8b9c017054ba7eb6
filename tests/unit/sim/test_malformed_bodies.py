"""Whatever a client sends, reading it ends in a request or a RequestError with a 4xx: the body
never raises anything else, so the server never answers a client's mistake with a 500."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from phalanx.sim.protocol import Limits, RequestError, decode_request

from .malformed import bodies

LIMITS = Limits(served_model_names=("tiny",), max_model_len=64, default_max_tokens=16)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, chat=...)
def test_any_body_is_a_request_or_a_client_error(body: bytes, chat: bool) -> None:
    try:
        decode_request(body, chat=chat, limits=LIMITS)
    except RequestError as exc:
        assert 400 <= exc.status < 500
        assert exc.message
        assert exc.unforeseen is None, f"no check caught {exc.unforeseen!r} for {body[:200]!r}"
