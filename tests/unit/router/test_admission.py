from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.router.admission import (
    Admission,
    AdmissionConfig,
    Capacity,
    CompletionRate,
    Pick,
    Priority,
    Waiter,
    ahead_of,
    dispatch,
    effective_rank,
    overflow_victim,
    parse_priority,
    parse_queue_timeout,
    queue_order,
    retry_after_s,
)
from phalanx.router.rejection import Rejection

HIGH, NORMAL, LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW


class Pool:
    """Endpoints and the models they serve; `pick(model)` is the first one not at its cap."""

    def __init__(self, serving: dict[str, set[str]]) -> None:
        self.serving = serving
        self.calls = 0

    def pick(self, model: str) -> Pick:
        def choose(saturated: frozenset[str]) -> str | None:
            self.calls += 1
            free = sorted(n for n, models in self.serving.items() if model in models and n not in saturated)
            return free[0] if free else None

        return choose


def waiter(priority: Priority, seq: int, arrived: float = 0.0, model: str = "m") -> Waiter:
    return Waiter(model, priority, arrived, seq, lambda saturated: None)


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, NORMAL), ("", NORMAL), ("  ", NORMAL), ("high", HIGH), (" LOW ", LOW), ("Normal", NORMAL)],
)
def test_priority_header(value: str | None, expected: Priority) -> None:
    assert parse_priority(value) is expected


def test_unknown_priority_is_a_400_naming_the_choices() -> None:
    with pytest.raises(Rejection) as info:
        parse_priority("urgent")
    rejection = info.value
    assert rejection.status == 400
    assert rejection.body()["error"] == {
        "message": "The `x-priority` header must be one of high, normal, low; got 'urgent'.",
        "type": "BadRequestError",
        "param": "x-priority",
        "code": "invalid_priority",
    }


def test_queue_timeout_header_defaults_and_is_capped() -> None:
    config = AdmissionConfig(queue_timeout_s=30, max_queue_timeout_s=120)
    assert parse_queue_timeout(None, config) == 30
    assert parse_queue_timeout(" 2.5 ", config) == 2.5
    assert parse_queue_timeout("9999", config) == 120


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_bad_queue_timeout_header_is_a_400(value: str) -> None:
    with pytest.raises(Rejection) as info:
        parse_queue_timeout(value, AdmissionConfig())
    assert (info.value.status, info.value.code, info.value.param) == (
        400,
        "invalid_queue_timeout",
        "x-queue-timeout",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_queue": -1},
        {"default_cap": 0},
        {"endpoint_caps": {"a": 0}},
        {"queue_timeout_s": 0},
        {"queue_timeout_s": 10, "max_queue_timeout_s": 5},
        {"aging_s": 0},
        {"retry_after_s": 0},
        {"rate_window_s": 0},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AdmissionConfig(**kwargs)  # type: ignore[arg-type]


# -- ordering --------------------------------------------------------------------------------


def test_queue_order_is_class_then_arrival() -> None:
    ws = [waiter(LOW, 0), waiter(NORMAL, 1), waiter(HIGH, 2), waiter(NORMAL, 3), waiter(HIGH, 4)]
    ordered = queue_order(ws, now=0.0, aging_s=None)
    assert [(w.priority, w.seq) for w in ordered] == [
        (HIGH, 2),
        (HIGH, 4),
        (NORMAL, 1),
        (NORMAL, 3),
        (LOW, 0),
    ]


def test_aging_moves_a_waiter_up_one_class_per_period() -> None:
    low = waiter(LOW, 0, arrived=0.0)
    assert [effective_rank(low, t, 10.0) for t in (0.0, 9.9, 10.0, 19.9, 20.0, 500.0)] == [2, 2, 1, 1, 0, 0]
    assert effective_rank(low, 500.0, None) == 2


def test_an_aged_low_waiter_goes_before_a_newer_high_one() -> None:
    old_low = waiter(LOW, 0, arrived=0.0)
    new_high = waiter(HIGH, 1, arrived=25.0)
    assert queue_order([new_high, old_low], now=25.0, aging_s=10.0) == [old_low, new_high]
    # Strict priority: high always first.
    assert queue_order([new_high, old_low], now=25.0, aging_s=None) == [new_high, old_low]


def test_overflow_displaces_the_newest_of_the_lowest_class_only_for_a_better_class() -> None:
    ws = [waiter(NORMAL, 0), waiter(LOW, 1), waiter(LOW, 2)]
    assert overflow_victim(ws, HIGH, 0.0, None) is ws[2]
    assert overflow_victim(ws, NORMAL, 0.0, None) is ws[2]
    assert overflow_victim(ws, LOW, 0.0, None) is None
    assert overflow_victim([], HIGH, 0.0, None) is None
    # A low waiter aged to `high` is not displaced.
    assert overflow_victim([waiter(LOW, 0, arrived=0.0)], HIGH, 20.0, 10.0) is None


def test_ahead_of_counts_same_or_better_rank() -> None:
    ws = [waiter(HIGH, 0), waiter(NORMAL, 1), waiter(LOW, 2), waiter(LOW, 3)]
    assert [ahead_of(ws, p, 0.0, None) for p in (HIGH, NORMAL, LOW)] == [1, 2, 4]


# -- capacity and wake-up choice -------------------------------------------------------------


def test_capacity_caps_per_endpoint_with_overrides() -> None:
    cap = Capacity(default_cap=2, caps={"big": 3, "free": None})
    for name in ("a", "a", "big", "big", "free", "free", "free"):
        cap.take(name)
    assert cap.saturated() == {"a"}
    cap.take("big")
    assert cap.saturated() == {"a", "big"}
    with pytest.raises(RuntimeError, match="at its cap of 2"):
        cap.take("a")
    cap.give_back("a")
    assert cap.saturated() == {"big"}
    assert cap.in_use == {"a": 1, "big": 3, "free": 3}
    with pytest.raises(RuntimeError, match="no slot"):
        cap.give_back("never")


def test_dispatch_places_waiters_in_order_while_slots_last() -> None:
    pool = Pool({"a": {"m"}, "b": {"m"}})
    cap = Capacity(default_cap=1)
    ws = [Waiter("m", NORMAL, 0.0, i, pool.pick("m")) for i in range(4)]
    assert dispatch(ws, cap) == [(ws[0], "a"), (ws[1], "b")]
    assert cap.in_use == {"a": 1, "b": 1}
    # The model is blocked after the first miss: the fourth waiter's pick is not even asked.
    assert pool.calls == 3


def test_dispatch_lets_another_model_past_a_blocked_one() -> None:
    pool = Pool({"a": {"m"}, "b": {"other"}})
    cap = Capacity(default_cap=1)
    cap.take("a")
    first = Waiter("m", HIGH, 0.0, 0, pool.pick("m"))
    second = Waiter("other", LOW, 0.0, 1, pool.pick("other"))
    assert dispatch([first, second], cap) == [(second, "b")]


def test_dispatch_hands_a_failing_pick_its_own_exception() -> None:
    gone = Rejection(503, "gone")

    def failing(saturated: frozenset[str]) -> str | None:
        raise gone

    def saturated_choice(saturated: frozenset[str]) -> str:
        return "a"

    cap = Capacity(default_cap=1)
    cap.take("a")
    bad = Waiter("x", HIGH, 0.0, 0, failing)
    wrong = Waiter("y", HIGH, 0.0, 1, saturated_choice)
    results = dispatch([bad, wrong], cap)
    assert results[0] == (bad, gone)
    assert results[1][0] is wrong
    assert isinstance(results[1][1], RuntimeError)
    assert cap.in_use == {"a": 1}


@settings(max_examples=150, deadline=None)
@given(
    serving=st.lists(st.sets(st.sampled_from("mno"), min_size=1), min_size=1, max_size=4),
    used=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    cap=st.integers(1, 3),
    wanted=st.lists(st.tuples(st.sampled_from("mno"), st.sampled_from(Priority)), max_size=12),
)
def test_dispatch_never_exceeds_a_cap_and_leaves_no_placeable_waiter(
    serving: list[set[str]], used: list[int], cap: int, wanted: list[tuple[str, Priority]]
) -> None:
    pool = Pool({f"e{i}": models for i, models in enumerate(serving)})
    capacity = Capacity(default_cap=cap)
    for i in range(len(serving)):
        for _ in range(min(used[i], cap)):
            capacity.take(f"e{i}")
    ws = [Waiter(model, p, 0.0, i, pool.pick(model)) for i, (model, p) in enumerate(wanted)]
    placed = {w for w, _ in dispatch(queue_order(ws, 0.0, None), capacity)}
    assert all(n <= cap for n in capacity.in_use.values())
    saturated = capacity.saturated()
    for w in ws:
        if w not in placed:
            assert all(name in saturated for name, models in pool.serving.items() if w.model in models)


# -- Retry-After -----------------------------------------------------------------------------


def test_completion_rate_over_a_trailing_window() -> None:
    rate = CompletionRate(window_s=10.0)
    assert rate.per_second(0.0) is None
    for t in range(20):
        rate.record(float(t))
    assert rate.per_second(19.0) == pytest.approx(1.0)  # 10 completions in (9, 19]
    assert rate.per_second(100.0) is None


def test_completion_rate_of_a_full_sample_buffer_uses_the_span_it_covers() -> None:
    rate = CompletionRate(window_s=10.0, max_samples=4)
    for t in (1.0, 1.5, 2.0, 2.5, 3.0):
        rate.record(t)
    assert rate.per_second(3.0) == pytest.approx(4 / 1.5)


@pytest.mark.parametrize(
    ("ahead", "rate", "expected"),
    [(10, None, 3), (10, 0.0, 3), (10, 2.0, 5), (1, 100.0, 1), (0, 0.5, 2), (1000, 1.0, 60), (3, 0.7, 5)],
)
def test_retry_after_estimate(ahead: int, rate: float | None, expected: int) -> None:
    assert retry_after_s(ahead, rate, fallback=3, ceiling=60) == expected


# -- the asyncio shell -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_free_endpoint_is_granted_at_once_and_released_after() -> None:
    adm = Admission(AdmissionConfig(default_cap=2))
    pool = Pool({"a": {"m"}})
    async with adm.slot("m", NORMAL, 1.0, pool.pick("m")) as name:
        assert name == "a"
        assert adm.in_use() == {"a": 1}
    assert adm.in_use() == {}


async def test_an_error_in_the_block_still_gives_the_slot_back() -> None:
    adm = Admission(AdmissionConfig(default_cap=1))
    pool = Pool({"a": {"m"}})
    with pytest.raises(ZeroDivisionError):
        async with adm.slot("m", NORMAL, 1.0, pool.pick("m")):
            _ = 1 / 0
    assert adm.in_use() == {}


async def test_pick_sees_endpoints_at_their_cap() -> None:
    adm = Admission(AdmissionConfig(default_cap=1, endpoint_caps={"b": 2}))
    seen: list[frozenset[str]] = []

    def pick(saturated: frozenset[str]) -> str | None:
        seen.append(saturated)
        return next((n for n in ("a", "b") if n not in saturated), None)

    names = [await adm.acquire("m", NORMAL, 1.0, pick) for _ in range(3)]
    assert names == ["a", "b", "b"]
    assert seen == [frozenset(), frozenset({"a"}), frozenset({"a"})]
    assert adm.in_use() == {"a": 1, "b": 2}
    for name in names:
        adm.release(name)
    assert adm.in_use() == {}


async def test_waiters_wake_by_priority_then_arrival() -> None:
    adm = Admission(AdmissionConfig(default_cap=1, aging_s=None))
    pool = Pool({"a": {"m"}})
    holder = await adm.acquire("m", NORMAL, 1.0, pool.pick("m"))
    order: list[str] = []

    async def request(tag: str, priority: Priority) -> None:
        async with adm.slot("m", priority, 5.0, pool.pick("m")):
            order.append(tag)
            await asyncio.sleep(0)

    tasks = [
        asyncio.create_task(request(tag, p))
        for tag, p in [("low1", LOW), ("normal1", NORMAL), ("high1", HIGH), ("low2", LOW), ("high2", HIGH)]
    ]
    await settle()
    assert adm.queue_depth() == {"high": 2, "normal": 1, "low": 2}
    adm.release(holder)
    await asyncio.gather(*tasks)
    assert order == ["high1", "high2", "normal1", "low1", "low2"]
    assert adm.in_use() == {}
    assert adm.queue_depth() == {"high": 0, "normal": 0, "low": 0}


async def test_a_full_queue_answers_429_with_the_fallback_retry_after() -> None:
    adm = Admission(AdmissionConfig(default_cap=1, max_queue=1, retry_after_s=7))
    pool = Pool({"a": {"m"}})
    holder = await adm.acquire("m", NORMAL, 1.0, pool.pick("m"))
    queued = asyncio.create_task(adm.acquire("m", NORMAL, 5.0, pool.pick("m")))
    await settle()
    with pytest.raises(Rejection) as info:
        await adm.acquire("m", NORMAL, 5.0, pool.pick("m"))
    assert info.value.status == 429
    assert info.value.code == "queue_full"
    assert info.value.headers == {"Retry-After": "7"}
    response = info.value.response()
    assert response.headers["Retry-After"] == "7"
    assert json.loads(response.text or "")["error"]["type"] == "RateLimitError"
    adm.release(holder)
    adm.release(await queued)
    assert adm.in_use() == {}


async def test_retry_after_is_estimated_from_recent_completions() -> None:
    clock = Clock()
    adm = Admission(AdmissionConfig(default_cap=1, max_queue=2, rate_window_s=10.0), clock=clock)
    pool = Pool({"a": {"m"}})
    # 5 completions in the last 10 s: 0.5 per second.
    for _ in range(5):
        adm.release(await adm.acquire("m", NORMAL, 1.0, pool.pick("m")))
        clock.now += 1.0
    holder = await adm.acquire("m", NORMAL, 1.0, pool.pick("m"))
    queued = [asyncio.create_task(adm.acquire("m", NORMAL, 5.0, pool.pick("m"))) for _ in range(2)]
    await settle()
    with pytest.raises(Rejection) as info:
        await adm.acquire("m", LOW, 5.0, pool.pick("m"))
    # Two waiters ahead at 0.5 per second.
    assert info.value.headers["Retry-After"] == "4"
    adm.release(holder)
    for task in queued:
        adm.release(await task)


async def test_a_better_class_displaces_the_worst_waiter_of_a_full_queue() -> None:
    adm = Admission(AdmissionConfig(default_cap=1, max_queue=1, aging_s=None))
    pool = Pool({"a": {"m"}})
    holder = await adm.acquire("m", NORMAL, 1.0, pool.pick("m"))
    low = asyncio.create_task(adm.acquire("m", LOW, 5.0, pool.pick("m")))
    await settle()
    high = asyncio.create_task(adm.acquire("m", HIGH, 5.0, pool.pick("m")))
    await settle()
    with pytest.raises(Rejection) as info:
        await low
    assert info.value.status == 429
    assert adm.queue_depth() == {"high": 1, "normal": 0, "low": 0}
    adm.release(holder)
    adm.release(await high)
    assert adm.in_use() == {}


async def test_a_queue_timeout_is_a_504_and_leaves_nothing_behind() -> None:
    adm = Admission(AdmissionConfig(default_cap=1))
    pool = Pool({"a": {"m"}})
    holder = await adm.acquire("m", NORMAL, 1.0, pool.pick("m"))
    with pytest.raises(Rejection) as info:
        await adm.acquire("m", HIGH, 0.02, pool.pick("m"))
    assert info.value.status == 504
    assert info.value.code == "queue_timeout"
    assert "timed out waiting in the queue after 0.02 s" in info.value.message.lower()
    assert adm.queue_depth() == {"high": 0, "normal": 0, "low": 0}
    adm.release(holder)
    assert adm.in_use() == {}


async def one_waiting() -> tuple[Admission, str, asyncio.Task[str]]:
    """One endpoint with a cap of 1, held, and one request waiting for it."""
    adm = Admission(AdmissionConfig(default_cap=1))
    pool = Pool({"a": {"m"}})
    holder = await adm.acquire("m", NORMAL, 1.0, pool.pick("m"))
    task = asyncio.create_task(adm.acquire("m", NORMAL, 5.0, pool.pick("m")))
    await settle()
    return adm, holder, task


async def test_a_client_gone_while_waiting_leaves_the_queue() -> None:
    adm, holder, task = await one_waiting()
    assert adm.queue_depth()["normal"] == 1
    task.cancel()
    # In the same turn, before the cancelled task has run its clean-up: the slot must not go to it.
    adm.release(holder)
    assert adm.in_use() == {}
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adm.queue_depth()["normal"] == 0
    assert adm.in_use() == {}


async def test_a_client_gone_just_after_its_grant_gives_the_slot_back() -> None:
    adm, holder, task = await one_waiting()
    adm.release(holder)
    # Granted (the slot is counted) but the task has not run yet; now it is cancelled.
    assert adm.in_use() == {"a": 1}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert adm.in_use() == {}


async def test_a_pick_that_rejects_on_wake_ends_that_wait() -> None:
    adm = Admission(AdmissionConfig(default_cap=1))
    served = {"m": True}

    def pick(saturated: frozenset[str]) -> str | None:
        if not served["m"]:
            raise Rejection(404, "The model `m` does not exist.")
        return None if "a" in saturated else "a"

    holder = await adm.acquire("m", NORMAL, 1.0, pick)
    task = asyncio.create_task(adm.acquire("m", NORMAL, 5.0, pick))
    await settle()
    served["m"] = False
    adm.wake()
    with pytest.raises(Rejection) as info:
        await task
    assert info.value.status == 404
    adm.release(holder)
    assert adm.in_use() == {}


async def test_wake_places_waiters_on_an_endpoint_that_appeared() -> None:
    adm = Admission(AdmissionConfig(default_cap=1))
    pool = Pool({})
    task = asyncio.create_task(adm.acquire("m", NORMAL, 5.0, pool.pick("m")))
    await settle()
    pool.serving["new"] = {"m"}
    adm.wake()
    assert await task == "new"
    adm.release("new")


async def test_raising_a_cap_lets_waiters_in() -> None:
    adm, holder, task = await one_waiting()
    adm.set_caps(1, {"a": 2})
    assert await task == "a"
    assert adm.in_use() == {"a": 2}
    with pytest.raises(ValueError):
        adm.set_caps(0)
    adm.release(holder)
    adm.release("a")


async def test_with_no_queue_a_saturated_model_is_refused_at_once() -> None:
    adm = Admission(AdmissionConfig(default_cap=1, max_queue=0))
    pool = Pool({"a": {"m"}})
    holder = await adm.acquire("m", HIGH, 1.0, pool.pick("m"))
    with pytest.raises(Rejection) as info:
        await adm.acquire("m", HIGH, 1.0, pool.pick("m"))
    assert info.value.status == 429
    adm.release(holder)


# Operations on a live Admission: a new request (model, class, short or long timeout), one
# finishing, one cancelled (client gone), time passing.
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.sampled_from("mn"), st.sampled_from(Priority), st.booleans()),
        st.tuples(st.just("finish"), st.integers(0, 30)),
        st.tuples(st.just("cancel"), st.integers(0, 30)),
        st.tuples(st.just("tick")),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS, cap=st.integers(1, 2), max_queue=st.integers(0, 3))
def test_random_traffic_keeps_every_bound_and_leaks_no_slot(
    ops: list[tuple[object, ...]], cap: int, max_queue: int
) -> None:
    asyncio.run(_random_traffic(ops, cap, max_queue))


async def _random_traffic(ops: list[tuple[object, ...]], cap: int, max_queue: int) -> None:
    adm = Admission(AdmissionConfig(default_cap=cap, max_queue=max_queue))
    pool = Pool({"a": {"m"}, "b": {"m", "n"}})
    holding: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []
    done: list[asyncio.Event] = []

    def request(
        model: str, priority: Priority, timeout_s: float
    ) -> Callable[[asyncio.Event], asyncio.Task[None]]:
        async def run(finish: asyncio.Event) -> None:
            try:
                async with adm.slot(model, priority, timeout_s, pool.pick(model)) as name:
                    holding[name] = holding.get(name, 0) + 1
                    try:
                        await finish.wait()
                    finally:
                        holding[name] -= 1
            except Rejection:
                pass

        return lambda finish: asyncio.create_task(run(finish))

    def check() -> None:
        assert sum(adm.queue_depth().values()) <= max_queue
        assert all(n <= cap for n in adm.in_use().values())
        assert all(0 <= n <= cap for n in holding.values())

    for op in ops:
        match op:
            case ("arrive", str(model), Priority() as priority, bool(short)):
                event = asyncio.Event()
                done.append(event)
                tasks.append(request(model, priority, 0.001 if short else 30.0)(event))
            case ("finish", int(i)) if i < len(done):
                done[i].set()
            case ("cancel", int(i)) if i < len(tasks):
                tasks[i].cancel()
            case ("tick",):
                await asyncio.sleep(0.002)
        await settle()
        check()

    for event in done:
        event.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    check()
    assert adm.in_use() == {}
    assert sum(adm.queue_depth().values()) == 0
    assert all(n == 0 for n in holding.values())


async def test_waiting_by_model_counts_the_queue_per_model_and_forgets_the_served() -> None:
    adm = Admission(AdmissionConfig(default_cap=None))
    pool = Pool({})  # nothing serves either model yet: both wait
    tasks = [asyncio.create_task(adm.acquire(m, NORMAL, 5.0, pool.pick(m))) for m in ("m", "m", "n")]
    await settle()
    assert adm.waiting_by_model() == {"m": 2, "n": 1}
    pool.serving["a"] = {"m"}
    adm.wake()  # what the router does when the endpoint set changes
    assert adm.waiting_by_model() == {"n": 1}
    assert await asyncio.gather(*tasks[:2]) == ["a", "a"]
    tasks[2].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[2]
    assert adm.waiting_by_model() == {}
