"""The error boundary of Kubernetes calls: classification, the backoff schedule, the retry loop."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import httpx2
import pytest
from lightkube.core.exceptions import ApiError

from phalanx.kube.errors import (
    MAX_RETRY_AFTER_S,
    Backoff,
    WatchEnded,
    classify,
    describe,
    is_kube_error,
    is_not_found,
    next_delay,
    retry,
    retry_after,
    status_of,
)

REQUEST = httpx2.Request("PUT", "https://api.test/api/v1/namespaces/default/pods/p")


def api_error(
    code: int, reason: str = "", *, headers: dict[str, str] | None = None, **details: Any
) -> ApiError:
    """The ApiError lightkube raises for a JSON Status answer, built from a real response."""
    body: dict[str, Any] = {"kind": "Status", "status": "Failure", "code": code, "reason": reason}
    body["message"] = f"the server said {code}"
    if details:
        body["details"] = details
    response = httpx2.Response(code, json=body, headers=headers, request=REQUEST)
    return ApiError(request=REQUEST, response=response)


def plain_status_error(code: int) -> httpx2.HTTPStatusError:
    """What lightkube passes on when the answer is not JSON (an API group the server does not know)."""
    response = httpx2.Response(code, text="404 page not found", request=REQUEST)
    return httpx2.HTTPStatusError("not json", request=REQUEST, response=response)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (400, "BadRequest", "permanent"),
        (401, "Unauthorized", "permanent"),
        (403, "Forbidden", "permanent"),
        (404, "NotFound", "permanent"),
        (405, "MethodNotAllowed", "permanent"),
        (408, "Timeout", "transient"),
        (409, "Conflict", "transient"),  # an update that lost a resourceVersion race: re-read, try again
        (409, "AlreadyExists", "permanent"),  # a create: repeating it never helps
        (410, "Expired", "transient"),  # a watch's resource version is too old: list again
        (415, "UnsupportedMediaType", "permanent"),
        (422, "Invalid", "permanent"),
        (429, "TooManyRequests", "transient"),
        (500, "InternalError", "transient"),
        (501, "NotImplemented", "permanent"),
        (502, "", "transient"),
        (503, "ServiceUnavailable", "transient"),
        (504, "Timeout", "transient"),
        (507, "", "transient"),
    ],
)
def test_api_answers_are_classified_by_status(code: int, reason: str, kind: str) -> None:
    exc = api_error(code, reason)
    assert status_of(exc) == code
    assert classify(exc) == kind
    assert is_kube_error(exc)


def test_answers_that_are_not_json_still_have_a_status() -> None:
    assert status_of(plain_status_error(404)) == 404
    assert is_not_found(plain_status_error(404))
    assert classify(plain_status_error(404)) == "permanent"
    assert classify(plain_status_error(503)) == "transient"


def test_an_error_event_from_a_watch_has_a_status_but_no_response() -> None:
    from lightkube.models.meta_v1 import Status

    exc = ApiError(status=Status(code=410, reason="Expired", message="too old resource version"))
    assert status_of(exc) == 410
    assert classify(exc) == "transient"
    assert retry_after(exc) is None
    assert describe(exc) == "410 too old resource version"


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectError("refused", request=REQUEST),
        httpx2.ReadTimeout("slow", request=REQUEST),
        httpx2.RemoteProtocolError("peer closed", request=REQUEST),
        ConnectionResetError(104, "reset by peer"),
        TimeoutError(),
        OSError("no route"),
        WatchEnded("the watch ended"),
    ],
)
def test_failures_without_an_answer_are_transient(exc: BaseException) -> None:
    assert status_of(exc) is None
    assert classify(exc) == "transient"


@pytest.mark.parametrize(
    "exc",
    [httpx2.DecodingError("garbled", request=REQUEST), httpx2.TooManyRedirects("loop", request=REQUEST)],
)
def test_client_side_defects_are_permanent(exc: BaseException) -> None:
    assert classify(exc) == "permanent"


@pytest.mark.parametrize("exc", [ValueError("bad"), KeyError("metadata"), RuntimeError()])
def test_other_exceptions_are_not_kubernetes_failures(exc: BaseException) -> None:
    assert classify(exc) == "foreign"
    assert not is_kube_error(exc)
    assert status_of(exc) is None


async def test_a_refused_connection_on_loopback_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with httpx2.AsyncClient() as client:
            with pytest.raises(httpx2.HTTPError) as caught:
                await client.get(f"http://127.0.0.1:{port}/")
    assert classify(caught.value) == "transient"


@pytest.mark.parametrize(
    ("headers", "details", "asked"),
    [
        ({"Retry-After": "2"}, {"retryAfterSeconds": 5}, 2.0),  # the header wins
        ({}, {"retryAfterSeconds": 5}, 5.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, {}, None),  # a date is not followed
        ({"Retry-After": "-1"}, {}, None),
        ({"Retry-After": "3600"}, {}, MAX_RETRY_AFTER_S),
        ({}, {}, None),
    ],
)
def test_retry_after(headers: dict[str, str], details: dict[str, Any], asked: float | None) -> None:
    assert retry_after(api_error(429, "TooManyRequests", headers=headers, **details)) == asked


def test_backoff_doubles_up_to_the_cap_and_jitter_only_shortens() -> None:
    backoff = Backoff(initial=0.5, cap=10.0, factor=2.0, jitter=0.2)
    assert [backoff.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay(10_000) == 10.0  # no overflow however long it failed
    assert backoff.delay(0, sample=0.5) == pytest.approx(0.45)
    assert backoff.delay(9, sample=0.999) == pytest.approx(10.0 * (1 - 0.2 * 0.999))
    assert Backoff(1.0, 1.0, jitter=0.0).delay(5, sample=0.9) == 1.0


@pytest.mark.parametrize(
    "args", [(0.0, 1.0), (2.0, 1.0), (1.0, 2.0, 0.5), (1.0, 2.0, 2.0, 1.0), (1.0, 2.0, 2.0, -0.1)]
)
def test_backoff_refuses_a_schedule_that_makes_no_sense(args: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="0 < initial <= cap"):
        Backoff(*args)


def test_the_server_may_ask_for_a_longer_wait_never_a_shorter_one() -> None:
    backoff = Backoff(1.0, 10.0, jitter=0.0)
    assert next_delay(api_error(429, headers={"Retry-After": "7"}), 0, backoff) == 7.0
    assert next_delay(api_error(429, headers={"Retry-After": "0"}), 3, backoff) == 8.0
    assert next_delay(api_error(503), 1, backoff) == 2.0


def test_describe() -> None:
    assert describe(api_error(403, "Forbidden")) == "403 the server said 403"
    assert describe(plain_status_error(404)) == "404 Not Found"
    status = httpx2.Response(403, json={"kind": "Status", "message": "pods is forbidden"}, request=REQUEST)
    undecoded = httpx2.HTTPStatusError("403", request=REQUEST, response=status)
    assert describe(undecoded) == "403 pods is forbidden"
    assert describe(ConnectionResetError(104, "reset")) == "ConnectionResetError: [Errno 104] reset"
    assert describe(TimeoutError()) == "TimeoutError"


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(
    *errors: BaseException, result: str = "done", took: float = 0.0, time: FakeTime | None = None
) -> Any:
    """A call that raises each error in turn (each after `took` seconds), then returns `result`."""
    pending = list(errors)
    calls: list[int] = []

    async def call() -> str:
        calls.append(1)
        if time is not None:
            time.now += took
        if pending:
            raise pending.pop(0)
        return result

    call.calls = calls  # type: ignore[attr-defined]
    return call


async def test_retry_waits_with_backoff_until_it_works() -> None:
    time = FakeTime()
    call = failing(api_error(503), httpx2.ConnectError("refused"), api_error(409, "Conflict"))
    result = await retry(
        call, what="x", backoff=Backoff(0.5, 10.0), sleep=time.sleep, clock=time.clock, rand=lambda: 0.0
    )
    assert result == "done"
    assert time.sleeps == [0.5, 1.0, 2.0]


async def test_retry_honours_retry_after() -> None:
    time = FakeTime()
    call = failing(api_error(429, "TooManyRequests", headers={"Retry-After": "4"}))
    await retry(call, what="x", backoff=Backoff(0.5, 10.0), sleep=time.sleep, clock=time.clock)
    assert time.sleeps == [4.0]


async def test_a_permanent_error_is_raised_at_once() -> None:
    time = FakeTime()
    call = failing(api_error(503), api_error(403, "Forbidden"))
    with pytest.raises(ApiError) as caught:
        await retry(call, what="x", sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)
    assert status_of(caught.value) == 403
    assert time.sleeps == [0.5]


async def test_a_foreign_error_is_never_retried_even_by_a_loop_that_waits_for_setup() -> None:
    time = FakeTime()
    with pytest.raises(KeyError):
        await retry(failing(KeyError("x")), what="x", retry_on=is_kube_error, sleep=time.sleep)
    assert time.sleeps == []
    # a permanent answer is waited out where the caller says so (RBAC granted later)
    done = await retry(
        failing(api_error(403, "Forbidden")), what="x", retry_on=is_kube_error, sleep=time.sleep
    )
    assert done == "done"


async def test_retry_gives_up_after_the_attempts() -> None:
    time = FakeTime()
    call = failing(*[api_error(500) for _ in range(5)])
    with pytest.raises(ApiError):
        await retry(call, what="x", attempts=3, sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)
    assert len(call.calls) == 3
    assert time.sleeps == [0.5, 1.0]


async def test_retry_gives_up_before_a_wait_that_would_pass_the_deadline() -> None:
    time = FakeTime()
    call = failing(*[api_error(500) for _ in range(10)])
    with pytest.raises(ApiError):
        await retry(call, what="x", deadline=3.0, sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)
    assert time.sleeps == [0.5, 1.0]  # then 2.0 more would end at 3.5 > 3.0


async def test_a_call_that_ran_long_before_failing_starts_the_backoff_over() -> None:
    time = FakeTime()
    errors = [api_error(500) for _ in range(4)]
    call = failing(*errors, took=0.0, time=time)
    quick = await retry(call, what="x", sleep=time.sleep, clock=time.clock, rand=lambda: 0.0, reset_after=60)
    assert quick == "done" and time.sleeps == [0.5, 1.0, 2.0, 4.0]
    time = FakeTime()
    call = failing(*errors[:3], took=61.0, time=time)
    await retry(call, what="x", sleep=time.sleep, clock=time.clock, rand=lambda: 0.0, reset_after=60)
    assert time.sleeps == [0.5, 0.5, 0.5]


async def test_retry_logs_each_failure_and_what_it_was(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    call = failing(api_error(503, "ServiceUnavailable"), WatchEnded("the watch ended"))
    with caplog.at_level(logging.INFO, logger="phalanx.kube"):
        await retry(call, what="listing pods", sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "listing pods failed (503 the server said 503); trying again in 0.5s"),
        (logging.INFO, "listing pods failed (WatchEnded: the watch ended); trying again in 1s"),
    ]


async def test_retry_is_cancelled_at_once_while_it_waits() -> None:
    started = asyncio.get_running_loop().time()
    call = failing(*[api_error(503) for _ in range(100)])
    task = asyncio.create_task(retry(call, what="x", backoff=Backoff(30.0, 30.0)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started < 5.0


async def test_retry_with_real_short_sleeps() -> None:
    call = failing(api_error(503), api_error(429, "TooManyRequests"))
    started = asyncio.get_running_loop().time()
    assert await retry(call, what="x", backoff=Backoff(0.02, 0.05, jitter=0.0)) == "done"
    assert asyncio.get_running_loop().time() - started >= 0.06
