"""Admission control: per-endpoint concurrency caps and one bounded priority queue in front of them.

A request asks for a slot; the routing policy (`pick`, supplied by the caller) chooses among the
endpoints that are not at their cap. When it finds none the request waits in the queue, ordered by
priority class (with aging) and then by arrival, until a slot frees, its queue timeout passes, or
the client goes away. The decisions (order, who wakes, Retry-After) are plain functions below;
`Admission` only ties them to futures and timeouts.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.router.rejection import Rejection

PRIORITY_HEADER = "x-priority"
QUEUE_TIMEOUT_HEADER = "x-queue-timeout"

# Given the endpoints at their cap, the endpoint chosen for the request, or None when every
# endpoint serving its model is at its cap. It may raise `Rejection` (say, the model is no longer
# served) to end the wait with that answer.
Pick = Callable[[frozenset[str]], str | None]


class Priority(enum.IntEnum):
    """Priority classes, best first; the value is the rank the queue orders by."""

    HIGH = 0
    NORMAL = 1
    LOW = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class AdmissionConfig:
    # Requests waiting, all classes together; 0 answers 429 at once whenever nothing is free.
    max_queue: int = 1024
    # Requests one endpoint takes at a time; None is no cap (then only a missing endpoint queues).
    default_cap: int | None = None
    # Per endpoint name, overriding `default_cap` (None there lifts the cap for that endpoint).
    endpoint_caps: Mapping[str, int | None] = field(default_factory=dict)
    # How long a request waits for a slot unless its `x-queue-timeout` header asks for less/more.
    queue_timeout_s: float = 30.0
    # The most a header may ask for.
    max_queue_timeout_s: float = 300.0
    # A waiter moves up one class per `aging_s` in the queue, so a flood of `high` cannot starve
    # `low` forever; None is strict priority.
    aging_s: float | None = 10.0
    # Retry-After when no completions were seen recently to estimate from, and the most it says.
    retry_after_s: int = 1
    max_retry_after_s: int = 60
    # Completions in this trailing window give the rate that Retry-After is estimated from.
    rate_window_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_queue < 0:
            raise ValueError("max_queue must be 0 or more")
        check_caps(self.default_cap, self.endpoint_caps)
        if not 0 < self.queue_timeout_s <= self.max_queue_timeout_s:
            raise ValueError("queue_timeout_s must be positive and at most max_queue_timeout_s")
        if self.aging_s is not None and self.aging_s <= 0:
            raise ValueError("aging_s must be positive or None")
        if not 1 <= self.retry_after_s <= self.max_retry_after_s:
            raise ValueError("retry_after_s must be at least 1 and at most max_retry_after_s")
        if self.rate_window_s <= 0:
            raise ValueError("rate_window_s must be positive")


def check_caps(default_cap: int | None, endpoint_caps: Mapping[str, int | None]) -> None:
    for name, cap in [("default", default_cap), *endpoint_caps.items()]:
        if cap is not None and cap < 1:
            raise ValueError(f"the cap of endpoint {name} must be at least 1 or None, got {cap}")


# -- request headers -------------------------------------------------------------------------


def parse_priority(value: str | None) -> Priority:
    """The `x-priority` header: `high`, `normal` (also when absent or empty) or `low`."""
    text = (value or "").strip().lower()
    if not text:
        return Priority.NORMAL
    for priority in Priority:
        if priority.label == text:
            return priority
    allowed = ", ".join(p.label for p in Priority)
    raise Rejection(
        400,
        f"The `{PRIORITY_HEADER}` header must be one of {allowed}; got {text[:40]!r}.",
        param=PRIORITY_HEADER,
        code="invalid_priority",
    )


def parse_queue_timeout(value: str | None, config: AdmissionConfig) -> float:
    """The `x-queue-timeout` header (seconds, a number > 0), capped at `max_queue_timeout_s`."""
    text = (value or "").strip()
    if not text:
        return config.queue_timeout_s
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise Rejection(
            400,
            f"The `{QUEUE_TIMEOUT_HEADER}` header must be a number of seconds above 0; got {text[:40]!r}.",
            param=QUEUE_TIMEOUT_HEADER,
            code="invalid_queue_timeout",
        )
    return min(seconds, config.max_queue_timeout_s)


# -- pure decisions --------------------------------------------------------------------------


@dataclass(eq=False)
class Waiter:
    """One queued request. Identity, not value, tells two waiters apart."""

    model: str
    priority: Priority
    arrived: float
    seq: int
    pick: Pick


def effective_rank(waiter: Waiter, now: float, aging_s: float | None) -> int:
    """Its class rank, less one for every full `aging_s` it has waited (never better than `high`)."""
    if aging_s is None:
        return int(waiter.priority)
    return max(0, int(waiter.priority) - int((now - waiter.arrived) // aging_s))


def queue_order(waiters: Iterable[Waiter], now: float, aging_s: float | None) -> list[Waiter]:
    """Who is served first: best effective rank, then earliest arrival."""
    return sorted(waiters, key=lambda w: (effective_rank(w, now, aging_s), w.seq))


def overflow_victim(
    waiters: Iterable[Waiter], priority: Priority, now: float, aging_s: float | None
) -> Waiter | None:
    """With the queue full, the waiter a newcomer of `priority` displaces: the last in order, and
    only when it ranks strictly below the newcomer. None: the newcomer is the one turned away."""
    ordered = queue_order(waiters, now, aging_s)
    if not ordered:
        return None
    last = ordered[-1]
    return last if effective_rank(last, now, aging_s) > int(priority) else None


def ahead_of(waiters: Iterable[Waiter], priority: Priority, now: float, aging_s: float | None) -> int:
    """Waiters a newcomer of `priority` would queue behind."""
    return sum(1 for w in waiters if effective_rank(w, now, aging_s) <= int(priority))


_NONE: frozenset[str] = frozenset()


class Capacity:
    """Requests in use per endpoint, against each endpoint's cap."""

    def __init__(self, default_cap: int | None = None, caps: Mapping[str, int | None] | None = None) -> None:
        self.default_cap = default_cap
        self.caps: dict[str, int | None] = dict(caps or {})
        self.in_use: dict[str, int] = {}

    def cap(self, name: str) -> int | None:
        return self.caps.get(name, self.default_cap)

    def saturated(self) -> frozenset[str]:
        if self.default_cap is None and not self.caps:
            return _NONE  # no caps (the default): nothing is ever saturated, no set per request
        out = set()
        for name, used in self.in_use.items():
            cap = self.cap(name)
            if cap is not None and used >= cap:
                out.add(name)
        return frozenset(out)

    def take(self, name: str) -> None:
        cap = self.cap(name)
        used = self.in_use.get(name, 0)
        if cap is not None and used >= cap:
            raise RuntimeError(f"pick chose endpoint {name}, which is at its cap of {cap}")
        self.in_use[name] = used + 1

    def give_back(self, name: str) -> None:
        used = self.in_use.get(name, 0)
        if used <= 0:
            raise RuntimeError(f"endpoint {name} has no slot in use to give back")
        if used == 1:
            del self.in_use[name]
        else:
            self.in_use[name] = used - 1


def dispatch(ordered: Sequence[Waiter], capacity: Capacity) -> list[tuple[Waiter, str | Exception]]:
    """Place waiters in order while their `pick` finds a free endpoint, taking a slot for each.

    Once `pick` finds nothing for a model, later waiters for that model are passed over in this
    pass: the saturated set only grows while it runs, so their answer would be the same. A `pick`
    that raises ends that waiter's wait with the exception, and the others go on.
    """
    results: list[tuple[Waiter, str | Exception]] = []
    blocked: set[str] = set()
    for waiter in ordered:
        if waiter.model in blocked:
            continue
        try:
            name = waiter.pick(capacity.saturated())
            if name is not None:
                capacity.take(name)
        except Exception as exc:
            results.append((waiter, exc))
            continue
        if name is None:
            blocked.add(waiter.model)
        else:
            results.append((waiter, name))
    return results


class CompletionRate:
    """Slots given back per second over a trailing window."""

    def __init__(self, window_s: float, max_samples: int = 10_000) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_samples)

    def record(self, now: float) -> None:
        self._times.append(now)

    def per_second(self, now: float) -> float | None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if not self._times:
            return None
        # A full deque covers less than the window: rate over the span it does cover.
        span = self.window_s
        if len(self._times) == self._times.maxlen:
            span = max(now - self._times[0], 1e-3)
        return len(self._times) / span


def retry_after_s(ahead: int, rate: float | None, fallback: int, ceiling: int) -> int:
    """Seconds until the `ahead` waiters are likely served at `rate` per second: when a retry
    would find the queue moved on. At least 1, at most `ceiling`; `fallback` with no rate."""
    if rate is None or rate <= 0:
        return fallback
    return max(1, min(ceiling, math.ceil(max(ahead, 1) / rate)))


# -- the asyncio shell -----------------------------------------------------------------------


def queue_full(retry_after: int, waiting: int) -> Rejection:
    return Rejection(
        429,
        f"The router's queue is full ({waiting} requests waiting); retry in {retry_after} s.",
        code="queue_full",
        headers={"Retry-After": str(retry_after)},
    )


def queue_timeout(model: str, timeout_s: float) -> Rejection:
    return Rejection(
        504,
        f"Timed out waiting in the queue after {timeout_s:g} s: "
        f"no endpoint serving `{model}` was ready with room.",
        code="queue_timeout",
    )


class Admission:
    """Grants slots on endpoints; `async with admission.slot(...) as endpoint_name:`."""

    def __init__(self, config: AdmissionConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or AdmissionConfig()
        self._clock = clock
        self._capacity = Capacity(self.config.default_cap, self.config.endpoint_caps)
        self._rate = CompletionRate(self.config.rate_window_s)
        # Insertion-ordered; a waiter stays here until granted, rejected, or its task cleans up.
        self._queue: dict[Waiter, asyncio.Future[str]] = {}
        self._seq = itertools.count()

    # -- what metrics read ---------------------------------------------------------------

    def in_use(self) -> dict[str, int]:
        """Slots held per endpoint name (only endpoints holding at least one)."""
        return dict(self._capacity.in_use)

    def queue_depth(self) -> dict[str, int]:
        """Waiters per priority class (by the class they asked for, not their aged rank)."""
        depth = {p.label: 0 for p in Priority}
        for waiter, fut in self._queue.items():
            if not fut.done():
                depth[waiter.priority.label] += 1
        return depth

    def waiting_by_model(self) -> dict[str, int]:
        """Waiters per model (only models with at least one)."""
        waiting: dict[str, int] = {}
        for waiter, fut in self._queue.items():
            if not fut.done():
                waiting[waiter.model] = waiting.get(waiter.model, 0) + 1
        return waiting

    # -- changes from outside ------------------------------------------------------------

    def set_caps(
        self, default_cap: int | None, endpoint_caps: Mapping[str, int | None] | None = None
    ) -> None:
        """Change caps at run time; raising one lets waiters in at once, lowering one never
        interrupts requests already holding a slot."""
        check_caps(default_cap, endpoint_caps or {})
        self._capacity.default_cap = default_cap
        self._capacity.caps = dict(endpoint_caps or {})
        self.wake()

    def wake(self) -> None:
        """Let waiters re-run `pick`: call after the endpoint set changes (a new endpoint may take
        them, or a removed model may make `pick` reject them)."""
        if not self._queue:
            return  # nobody waits: the usual case on every release
        ordered = queue_order(
            [w for w, fut in self._queue.items() if not fut.done()], self._clock(), self.config.aging_s
        )
        for waiter, result in dispatch(ordered, self._capacity):
            fut = self._queue.pop(waiter)
            if isinstance(result, str):
                fut.set_result(result)
            else:
                fut.set_exception(result)

    # -- slots ---------------------------------------------------------------------------

    def slot(self, model: str, priority: Priority, timeout_s: float, pick: Pick) -> Slot:
        """Hold a slot on the endpoint `pick` chose for as long as the block runs.

        Raises `Rejection` 429 (queue full) or 504 (queue timeout), or what `pick` raised. A
        cancelled caller (client gone) leaves the queue, and any slot granted to it is given back.
        """
        return Slot(self, model, priority, timeout_s, pick)

    async def acquire(self, model: str, priority: Priority, timeout_s: float, pick: Pick) -> str:
        """`slot` without the context manager: every success needs exactly one `release(name)`."""
        # Straight in when an endpoint is free. Waiters cannot use it: every change to the
        # saturated set re-runs them, so a free endpoint left now is one no waiter's pick takes.
        name = pick(self._capacity.saturated())
        if name is not None:
            self._capacity.take(name)
            return name

        now = self._clock()
        waiting = [w for w, fut in self._queue.items() if not fut.done()]
        if len(waiting) >= self.config.max_queue:
            victim = overflow_victim(waiting, priority, now, self.config.aging_s)
            if victim is None:
                raise self._full(waiting, priority, now)
            self._queue.pop(victim).set_exception(self._full(waiting, victim.priority, now))

        waiter = Waiter(model, priority, now, next(self._seq), pick)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue[waiter] = fut
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    return await fut
            except BaseException:
                self._abandon(waiter, fut)
                raise
        except TimeoutError:
            raise queue_timeout(model, timeout_s) from None

    def release(self, name: str) -> None:
        """Give back a slot from `acquire`; the next waiters that fit are woken."""
        self._capacity.give_back(name)
        self._rate.record(self._clock())
        self.wake()

    def _abandon(self, waiter: Waiter, fut: asyncio.Future[str]) -> None:
        self._queue.pop(waiter, None)
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled() and fut.exception() is None:
            # Granted in the same turn as the timeout or the cancellation: nobody will use it.
            self._capacity.give_back(fut.result())
            self.wake()

    def _full(self, waiting: Sequence[Waiter], priority: Priority, now: float) -> Rejection:
        ahead = ahead_of(waiting, priority, now, self.config.aging_s)
        retry = retry_after_s(
            ahead, self._rate.per_second(now), self.config.retry_after_s, self.config.max_retry_after_s
        )
        return queue_full(retry, len(waiting))


class Slot:
    """`async with admission.slot(...) as endpoint_name:`, a class and not a generator: mypyc cannot
    compile an async generator."""

    def __init__(
        self, admission: Admission, model: str, priority: Priority, timeout_s: float, pick: Pick
    ) -> None:
        self._admission = admission
        self._args = (model, priority, timeout_s, pick)
        self._name: str | None = None

    async def __aenter__(self) -> str:
        self._name = await self._admission.acquire(*self._args)
        return self._name

    async def __aexit__(self, *exc: object) -> None:
        if self._name is not None:
            self._admission.release(self._name)
            self._name = None
