"""The one error boundary of every Kubernetes call: what failed, whether trying again can help, and how
long to wait before it does.

`classify` is the whole policy (pure): a call that failed on the way (connection refused or reset, a
timeout) or that the API server turned away for now (429, 5xx, a 409 update conflict, 410 Gone on a
watch) is transient; a request the server will refuse the same way again (400, 401, 403, 404, 422, a
409 AlreadyExists) is permanent. `retry` is the one retry-with-backoff loop built on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import httpx2
from lightkube.core.exceptions import ApiError

log = logging.getLogger("phalanx.kube")

T = TypeVar("T")
Kind = Literal["transient", "permanent", "foreign"]  # foreign: not the failure of a Kubernetes call

# Every failure of a Kubernetes call through lightkube: ApiError is an httpx2.HTTPStatusError, and the
# transport may surface a bare OSError (TimeoutError is one).
KUBE_ERRORS: tuple[type[BaseException], ...] = (httpx2.HTTPError, OSError)

TRANSIENT_STATUS = frozenset({408, 410, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 60.0  # a server's Retry-After is honoured up to this; more is taken as a mistake


class WatchEnded(Exception):
    """A watch stream that ended without an error: open it again (transient, and routine)."""


def status_of(exc: BaseException) -> int | None:
    """The HTTP status the API server answered with, or None where no answer came."""
    if isinstance(exc, ApiError):
        code = getattr(exc.status, "code", None)
        if code:
            return int(code)
    if isinstance(exc, httpx2.HTTPStatusError) and exc.response is not None:
        return int(exc.response.status_code)
    return None


def reason_of(exc: BaseException) -> str:
    """The API server's machine-readable reason (Conflict, AlreadyExists, NotFound...), or ''."""
    if isinstance(exc, ApiError):
        return str(getattr(exc.status, "reason", "") or "")
    return ""


def classify(exc: BaseException) -> Kind:
    if isinstance(exc, WatchEnded):
        return "transient"
    if not isinstance(exc, KUBE_ERRORS):
        return "foreign"
    status = status_of(exc)
    if status is None:
        # No answer: the connection failed or timed out; anything else of httpx2's (a bad URL, a
        # response that could not be decoded) is a defect that repeating will not cure.
        return "transient" if isinstance(exc, (httpx2.TransportError, OSError)) else "permanent"
    if status == 409:
        # An update that lost a race to a newer resourceVersion succeeds once re-read; AlreadyExists
        # on a create never will (callers tolerate it instead).
        return "permanent" if reason_of(exc) == "AlreadyExists" else "transient"
    if status in TRANSIENT_STATUS or (status >= 500 and status != 501):
        return "transient"
    return "permanent"


def is_transient(exc: BaseException) -> bool:
    return classify(exc) == "transient"


def is_kube_error(exc: BaseException) -> bool:
    """Any failure of a Kubernetes call, permanent ones included: for loops that wait for the cluster
    to be set up (RBAC granted, a CRD installed) as a controller does, rather than exit."""
    return classify(exc) != "foreign"


def is_not_found(exc: BaseException) -> bool:
    return status_of(exc) == 404


def retry_after(exc: BaseException) -> float | None:
    """The wait the API server asked for (Retry-After, or the Status' retryAfterSeconds), if any."""
    seconds: float | None = None
    if isinstance(exc, httpx2.HTTPStatusError) and exc.response is not None:
        header = exc.response.headers.get("Retry-After")
        try:
            seconds = float(header) if header is not None else None
        except ValueError:  # an HTTP date: the API server never sends one, so it is not followed
            seconds = None
    if seconds is None and isinstance(exc, ApiError):
        details = getattr(exc.status, "details", None)
        hint = getattr(details, "retryAfterSeconds", None)
        seconds = float(hint) if hint else None
    if seconds is None or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def describe(exc: BaseException) -> str:
    """One line for a log: the status and the server's message, or the exception's type and text."""
    status = status_of(exc)
    if status is not None:
        message = getattr(getattr(exc, "status", None), "message", "")
        if not message and isinstance(exc, httpx2.HTTPStatusError) and exc.response is not None:
            message = _message_in(exc.response) or exc.response.reason_phrase
        return f"{status} {message or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _message_in(response: httpx2.Response) -> str:
    """The message of a Status body that lightkube did not decode (its Content-Type had parameters)."""
    try:
        body = response.json()
    except (httpx2.ResponseNotRead, ValueError):  # a streamed watch, or not JSON
        return ""
    return str(body.get("message") or "") if isinstance(body, dict) else ""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: attempt n waits initial·factor^n, at most `cap`, less
    up to `jitter` of it at random (so retries of many clients spread out; the cap stays a cap)."""

    initial: float = 0.5
    cap: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.cap and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError("need 0 < initial <= cap, factor >= 1 and 0 <= jitter < 1")

    def delay(self, attempt: int, sample: float = 0.0) -> float:
        """The wait before retry number `attempt` (0 first); `sample` in [0, 1) draws the jitter."""
        base = self.cap
        if attempt < 64:  # past that the power overflows, and the cap was reached long before
            base = min(self.cap, self.initial * self.factor**attempt)
        return base * (1.0 - self.jitter * sample)


def next_delay(exc: BaseException, attempt: int, backoff: Backoff, sample: float = 0.0) -> float:
    """The backoff's wait, or longer where the server asked for longer."""
    wait = backoff.delay(attempt, sample)
    asked = retry_after(exc)
    return wait if asked is None else max(wait, asked)


def log_level(exc: BaseException) -> int:
    """Routine ends (a watch that expired or ended) are told at INFO, the rest at WARNING."""
    return logging.INFO if isinstance(exc, WatchEnded) or status_of(exc) == 410 else logging.WARNING


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff | None = None,
    retry_on: Callable[[BaseException], bool] = is_transient,
    attempts: int | None = None,
    deadline: float | None = None,
    reset_after: float | None = None,
    level: Callable[[BaseException], int] = log_level,
    logger: logging.Logger = log,
    then: str = "trying again",
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """`call()` until it returns, waiting with backoff after each failure that `retry_on` accepts.

    Gives up (raising the last error) after `attempts` calls, or when the next wait would end past
    `deadline` seconds from the start; never, when both are None. A call that ran `reset_after`
    seconds before failing starts the backoff over: it is a new failure, not the same one again.
    Each failure is logged to `logger` at `level(exc)`, saying what happens `then`. Cancellation is
    never caught: a task running this stops at once.
    """
    policy = backoff or Backoff()
    started = clock()
    failures = 0  # in a row, for the backoff
    calls = 0
    while True:
        began = clock()
        calls += 1
        try:
            return await call()
        except Exception as exc:
            if not retry_on(exc):
                raise
            if reset_after is not None and clock() - began >= reset_after:
                failures = 0
            wait = next_delay(exc, failures, policy, rand())
            failures += 1
            if attempts is not None and calls >= attempts:
                raise
            if deadline is not None and clock() - started + wait > deadline:
                raise
            logger.log(level(exc), "%s failed (%s); %s in %.3gs", what, describe(exc), then, wait)
            await sleep(wait)
