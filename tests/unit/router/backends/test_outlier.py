from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.router.backends import EventKind, FailureKind, HealthEvent, OutlierConfig, OutlierDetector
from phalanx.router.backends.outlier import (
    EndpointHealth,
    Passive,
    Step,
    on_attempt,
    on_check,
    on_failure,
    on_success,
    settle,
    wants_out,
)
from phalanx.router.endpoints import Endpoint

CFG = OutlierConfig(
    consecutive_failures=3,
    base_ejection_s=10.0,
    max_ejection_s=35.0,
    max_ejection_percent=50.0,
    ejection_decay_s=100.0,
    probe_timeout_s=5.0,
    unhealthy_checks=2,
    healthy_checks=2,
)
NOW = 1000.0


def ep(name: str, *models: str, ready: bool = True, draining: bool = False, url: str = "") -> Endpoint:
    return Endpoint(
        name=name,
        url=url or f"http://127.0.0.1/{name}",
        serving="s",
        group_index=0,
        models=models or ("m",),
        ready=ready,
        draining=draining,
    )


# -- the per-endpoint machine, every state against every input ------------------------------------

HEALTHY = EndpointHealth(healthy_since=NOW - 1)
STATES: dict[str, EndpointHealth] = {
    "healthy": HEALTHY,
    "one-failure": replace(HEALTHY, failures=1, transport=True),
    "at-threshold": replace(HEALTHY, failures=2, transport=True),
    # Two 5xx answers, both to client x: one failure short, and one client short too.
    "5xx-from-x": replace(HEALTHY, failures=2, clients=frozenset({"x"})),
    "ejected": EndpointHealth(Passive.EJECTED, ejections=1, until=NOW + 5, ejected_at=NOW - 5),
    "ejection-over": EndpointHealth(Passive.EJECTED, ejections=1, until=NOW, ejected_at=NOW - 10),
    "probing": EndpointHealth(Passive.PROBING, ejections=1, until=NOW - 3, ejected_at=NOW - 13),
    "probe-out": EndpointHealth(Passive.PROBING, ejections=1, until=NOW - 3, probe_at=NOW - 2),
    "probe-lost": EndpointHealth(Passive.PROBING, ejections=1, until=NOW - 9, probe_at=NOW - 5),
    # A probe got a 5xx for client x: not conclusive, the next request probes.
    "probe-5xx-from-x": EndpointHealth(
        Passive.PROBING, failures=1, clients=frozenset({"x"}), ejections=1, until=NOW - 3
    ),
}


def run(event: str, h: EndpointHealth) -> Step:
    match event:
        case "attempt":
            return on_attempt(h, NOW, CFG), []
        case "success":
            return on_success(h, "a", NOW)
        case "failure":
            return on_failure(h, "a", FailureKind.CONNECT, NOW, CFG)
        case "5xx-x" | "5xx-y":
            return on_failure(h, "a", FailureKind.HTTP_5XX, NOW, CFG, client=event[-1])
        case "check-ok":
            return on_check(h, "a", True, NOW, CFG)
        case "check-failed":
            return on_check(h, "a", False, NOW, CFG)
    raise AssertionError(event)


# (state, event) -> (passive, failures, ejections, until, probe_at, events as (kind, source, reason))
# A first ejection from healthy lasts 10 s (the base); a second one 20 s. "failure" is a refused
# connection; "5xx-x" and "5xx-y" a 5xx answer to client x or y (CFG needs two clients).
EJECT_1 = (Passive.EJECTED, 0, 1, NOW + 10, None)
EJECT_2 = (Passive.EJECTED, 0, 2, NOW + 20, None)
BY_REQUEST = [("recovered", "passive", "request")]
BY_CHECK = [("recovered", "passive", "health_check")]
BY_5XX = [("ejected", "passive", "5xx")]
# fmt: off
TABLE: dict[tuple[str, str], tuple[Any, ...]] = {
    ("healthy", "attempt"):            (Passive.HEALTHY, 0, 0, 0.0, None, []),
    ("healthy", "success"):            (Passive.HEALTHY, 0, 0, 0.0, None, []),
    ("healthy", "failure"):            (Passive.HEALTHY, 1, 0, 0.0, None, []),
    ("healthy", "check-ok"):           (Passive.HEALTHY, 0, 0, 0.0, None, []),
    ("healthy", "check-failed"):       (Passive.HEALTHY, 0, 0, 0.0, None, []),
    ("healthy", "5xx-x"):              (Passive.HEALTHY, 1, 0, 0.0, None, []),
    ("healthy", "5xx-y"):              (Passive.HEALTHY, 1, 0, 0.0, None, []),
    ("one-failure", "attempt"):        (Passive.HEALTHY, 1, 0, 0.0, None, []),
    ("one-failure", "success"):        (Passive.HEALTHY, 0, 0, 0.0, None, []),
    ("one-failure", "failure"):        (Passive.HEALTHY, 2, 0, 0.0, None, []),
    # Checks leave the passive count alone: a process can answer /health and fail requests.
    ("one-failure", "check-ok"):       (Passive.HEALTHY, 1, 0, 0.0, None, []),
    ("one-failure", "check-failed"):   (Passive.HEALTHY, 1, 0, 0.0, None, []),
    ("one-failure", "5xx-x"):          (Passive.HEALTHY, 2, 0, 0.0, None, []),
    ("one-failure", "5xx-y"):          (Passive.HEALTHY, 2, 0, 0.0, None, []),
    ("at-threshold", "attempt"):       (Passive.HEALTHY, 2, 0, 0.0, None, []),
    ("at-threshold", "success"):       (Passive.HEALTHY, 0, 0, 0.0, None, []),
    ("at-threshold", "failure"):       (*EJECT_1, [("ejected", "passive", "connect")]),
    ("at-threshold", "check-ok"):      (Passive.HEALTHY, 2, 0, 0.0, None, []),
    ("at-threshold", "check-failed"):  (Passive.HEALTHY, 2, 0, 0.0, None, []),
    # A refused connection in the run is the endpoint's own failure: any third failure ejects.
    ("at-threshold", "5xx-x"):         (*EJECT_1, BY_5XX),
    ("at-threshold", "5xx-y"):         (*EJECT_1, BY_5XX),
    # One client's failures, however many, eject nothing; a second client's do.
    ("5xx-from-x", "attempt"):         (Passive.HEALTHY, 2, 0, 0.0, None, []),
    ("5xx-from-x", "success"):         (Passive.HEALTHY, 0, 0, 0.0, None, []),
    ("5xx-from-x", "failure"):         (*EJECT_1, [("ejected", "passive", "connect")]),
    ("5xx-from-x", "check-ok"):        (Passive.HEALTHY, 2, 0, 0.0, None, []),
    ("5xx-from-x", "check-failed"):    (Passive.HEALTHY, 2, 0, 0.0, None, []),
    ("5xx-from-x", "5xx-x"):           (Passive.HEALTHY, 3, 0, 0.0, None, []),
    ("5xx-from-x", "5xx-y"):           (*EJECT_1, BY_5XX),
    # While ejected nothing passive counts: late answers to requests sent before the ejection.
    ("ejected", "attempt"):            (Passive.EJECTED, 0, 1, NOW + 5, None, []),
    ("ejected", "success"):            (Passive.EJECTED, 0, 1, NOW + 5, None, []),
    ("ejected", "failure"):            (Passive.EJECTED, 0, 1, NOW + 5, None, []),
    ("ejected", "check-ok"):           (Passive.EJECTED, 0, 1, NOW + 5, None, []),
    ("ejected", "check-failed"):       (Passive.EJECTED, 0, 1, NOW + 5, None, []),
    ("ejected", "5xx-x"):              (Passive.EJECTED, 0, 1, NOW + 5, None, []),
    ("ejected", "5xx-y"):              (Passive.EJECTED, 0, 1, NOW + 5, None, []),
    # The ejection time is over: the endpoint is probing, whatever its stored state says.
    ("ejection-over", "attempt"):      (Passive.PROBING, 0, 1, NOW, NOW, []),
    ("ejection-over", "success"):      (Passive.HEALTHY, 0, 1, NOW, None, BY_REQUEST),
    ("ejection-over", "failure"):      (*EJECT_2, [("ejected", "passive", "connect")]),
    ("ejection-over", "check-ok"):     (Passive.HEALTHY, 0, 1, NOW, None, BY_CHECK),
    ("ejection-over", "check-failed"): (*EJECT_2, [("ejected", "passive", "health_check")]),
    # A probe's 5xx for one client is not conclusive: the slot frees for the next request.
    ("ejection-over", "5xx-x"):        (Passive.PROBING, 1, 1, NOW, None, []),
    ("ejection-over", "5xx-y"):        (Passive.PROBING, 1, 1, NOW, None, []),
    ("probing", "attempt"):            (Passive.PROBING, 0, 1, NOW - 3, NOW, []),
    ("probing", "success"):            (Passive.HEALTHY, 0, 1, NOW - 3, None, BY_REQUEST),
    ("probing", "failure"):            (*EJECT_2, [("ejected", "passive", "connect")]),
    ("probing", "check-ok"):           (Passive.HEALTHY, 0, 1, NOW - 3, None, BY_CHECK),
    ("probing", "check-failed"):       (*EJECT_2, [("ejected", "passive", "health_check")]),
    ("probing", "5xx-x"):              (Passive.PROBING, 1, 1, NOW - 3, None, []),
    ("probing", "5xx-y"):              (Passive.PROBING, 1, 1, NOW - 3, None, []),
    # One probe at a time: a second request does not take the slot over.
    ("probe-out", "attempt"):          (Passive.PROBING, 0, 1, NOW - 3, NOW - 2, []),
    ("probe-out", "success"):          (Passive.HEALTHY, 0, 1, NOW - 3, None, BY_REQUEST),
    ("probe-out", "failure"):          (*EJECT_2, [("ejected", "passive", "connect")]),
    ("probe-out", "check-ok"):         (Passive.HEALTHY, 0, 1, NOW - 3, None, BY_CHECK),
    ("probe-out", "check-failed"):     (*EJECT_2, [("ejected", "passive", "health_check")]),
    ("probe-out", "5xx-x"):            (Passive.PROBING, 1, 1, NOW - 3, None, []),
    ("probe-out", "5xx-y"):            (Passive.PROBING, 1, 1, NOW - 3, None, []),
    # A probe that never reported frees the slot after probe_timeout_s.
    ("probe-lost", "attempt"):         (Passive.PROBING, 0, 1, NOW - 9, NOW, []),
    ("probe-lost", "success"):         (Passive.HEALTHY, 0, 1, NOW - 9, None, BY_REQUEST),
    ("probe-lost", "failure"):         (*EJECT_2, [("ejected", "passive", "connect")]),
    ("probe-lost", "check-ok"):        (Passive.HEALTHY, 0, 1, NOW - 9, None, BY_CHECK),
    ("probe-lost", "check-failed"):    (*EJECT_2, [("ejected", "passive", "health_check")]),
    ("probe-lost", "5xx-x"):           (Passive.PROBING, 1, 1, NOW - 9, None, []),
    ("probe-lost", "5xx-y"):           (Passive.PROBING, 1, 1, NOW - 9, None, []),
    ("probe-5xx-from-x", "attempt"):      (Passive.PROBING, 1, 1, NOW - 3, NOW, []),
    ("probe-5xx-from-x", "success"):      (Passive.HEALTHY, 0, 1, NOW - 3, None, BY_REQUEST),
    ("probe-5xx-from-x", "failure"):      (*EJECT_2, [("ejected", "passive", "connect")]),
    ("probe-5xx-from-x", "check-ok"):     (Passive.HEALTHY, 0, 1, NOW - 3, None, BY_CHECK),
    ("probe-5xx-from-x", "check-failed"): (*EJECT_2, [("ejected", "passive", "health_check")]),
    ("probe-5xx-from-x", "5xx-x"):        (Passive.PROBING, 2, 1, NOW - 3, None, []),
    ("probe-5xx-from-x", "5xx-y"):        (*EJECT_2, BY_5XX),
}
# fmt: on
EVENTS = ("attempt", "success", "failure", "check-ok", "check-failed", "5xx-x", "5xx-y")


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TABLE) == {(s, e) for s in STATES for e in EVENTS}


@pytest.mark.parametrize(("state", "event"), sorted(TABLE))
def test_passive_transition(state: str, event: str) -> None:
    passive, failures, ejections, until, probe_at, events = TABLE[(state, event)]
    h, emitted = run(event, STATES[state])
    assert (h.passive, h.failures, h.ejections, h.until, h.probe_at) == (
        passive, failures, ejections, until, probe_at,
    )  # fmt: skip
    assert [(e.kind.value, e.source, e.reason) for e in emitted] == events
    assert all(e.endpoint == "a" and e.at == NOW for e in emitted)
    for e in emitted:
        if e.kind is EventKind.EJECTED:
            assert e.duration_s == h.until - NOW


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("healthy", False),
        ("at-threshold", False),
        ("ejected", True),
        ("ejection-over", False),  # probing with the slot free: it may take one request
        ("probing", False),
        ("probe-out", True),  # its one request is out
        ("probe-lost", False),
    ],
)
def test_which_states_want_out(state: str, expected: bool) -> None:
    assert wants_out(STATES[state], NOW, CFG) is expected
    # The active verdict alone is enough.
    assert wants_out(replace(STATES[state], up=False), NOW, CFG)


# -- the active verdict -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("up", "check_failures", "check_successes", "ok", "after", "event"),
    [
        (True, 0, 2, False, (True, 1, 0), None),
        (True, 1, 0, False, (False, 2, 0), "ejected"),
        (True, 1, 0, True, (True, 0, 1), None),
        (False, 2, 0, True, (False, 0, 1), None),
        (False, 0, 1, True, (True, 0, 2), "recovered"),
        (False, 0, 1, False, (False, 1, 0), None),
        # The counts stop at their thresholds.
        (True, 0, 2, True, (True, 0, 2), None),
        (False, 2, 0, False, (False, 2, 0), None),
    ],
)
def test_active_transition(
    up: bool,
    check_failures: int,
    check_successes: int,
    ok: bool,
    after: tuple[bool, int, int],
    event: str | None,
) -> None:
    h = replace(HEALTHY, up=up, check_failures=check_failures, check_successes=check_successes)
    new, events = on_check(h, "a", ok, NOW, CFG)
    assert (new.up, new.check_failures, new.check_successes) == after
    assert [(e.kind.value, e.source) for e in events] == ([] if event is None else [(event, "active")])
    assert new.passive is Passive.HEALTHY


def test_a_failed_check_while_probing_moves_both_verdicts() -> None:
    h = replace(STATES["probing"], check_failures=1)
    new, events = on_check(h, "a", False, NOW, CFG)
    assert new.passive is Passive.EJECTED and not new.up
    assert [(e.kind, e.source) for e in events] == [
        (EventKind.EJECTED, "passive"),
        (EventKind.EJECTED, "active"),
    ]


# -- ejection length ---------------------------------------------------------------------------


def eject_from_healthy(h: EndpointHealth, now: float) -> EndpointHealth:
    for i in range(CFG.consecutive_failures):
        h, _ = on_failure(h, "a", FailureKind.HTTP_5XX, now, CFG, client=f"client-{i}")
    assert h.passive is Passive.EJECTED
    return h


def test_ejections_grow_by_the_base_and_stop_at_the_cap() -> None:
    h = eject_from_healthy(EndpointHealth(healthy_since=NOW), NOW)
    lengths = [h.until - NOW]
    now = NOW
    for _ in range(5):
        now = h.until
        h, _ = on_failure(h, "a", FailureKind.DISCONNECT, now, CFG)  # the probe fails
        lengths.append(h.until - now)
    assert lengths == [10.0, 20.0, 30.0, 35.0, 35.0, 35.0]


def test_healthy_time_takes_ejections_off_the_multiplier() -> None:
    h = replace(HEALTHY, ejections=3, healthy_since=NOW)
    # 250 s healthy with a 100 s decay step: two steps off, so this is the second ejection.
    h = eject_from_healthy(h, NOW + 250)
    assert (h.ejections, h.until) == (2, NOW + 250 + 20)
    # Long enough healthy and it starts over.
    h = eject_from_healthy(replace(HEALTHY, ejections=3, healthy_since=NOW), NOW + 10_000)
    assert (h.ejections, h.until) == (1, NOW + 10_000 + 10)


def test_a_recovery_restarts_the_healthy_clock() -> None:
    h = replace(STATES["probing"], ejections=2, healthy_since=NOW - 10_000)
    h, _ = on_success(h, "a", NOW)
    assert h.healthy_since == NOW
    # Failing right after recovering: no decay, the third ejection.
    h = eject_from_healthy(h, NOW + 1)
    assert h.ejections == 3


def test_settle_only_moves_a_finished_ejection() -> None:
    assert settle(STATES["ejected"], NOW) == STATES["ejected"]
    assert settle(STATES["ejection-over"], NOW).passive is Passive.PROBING
    for name in ("healthy", "probing", "probe-out"):
        assert settle(STATES[name], NOW) == STATES[name]


@pytest.mark.parametrize(
    "changes",
    [
        {"consecutive_failures": 0},
        {"unhealthy_checks": 0},
        {"healthy_checks": 0},
        {"base_ejection_s": 0},
        {"ejection_decay_s": -1},
        {"probe_timeout_s": 0},
        {"max_ejection_s": 5.0},
        {"max_ejection_percent": 101},
        {"max_ejection_percent": -1},
        {"min_failing_clients": 0},
    ],
)
def test_bad_config_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        replace(CFG, **changes)


# -- the detector: bookkeeping and fleet-wide limits ------------------------------------------


def detector(*endpoints: Endpoint, **changes: float) -> tuple[OutlierDetector, list[HealthEvent]]:
    events: list[HealthEvent] = []
    d = OutlierDetector(replace(CFG, **changes), on_event=events.append)
    d.set_endpoints(endpoints)
    return d, events


def fail(d: OutlierDetector, name: str, now: float, times: int = 3) -> None:
    for _ in range(times):
        d.record_failure(name, FailureKind.CONNECT, now)


def test_eject_probe_and_recover_through_requests() -> None:
    d, events = detector(ep("a"), ep("b"))
    fail(d, "a", NOW, times=2)
    assert d.ejected(NOW) == frozenset()
    fail(d, "a", NOW, times=1)
    assert d.ejected(NOW) == {"a"}
    assert d.ejected(NOW + 9.9) == {"a"}
    # Ejection over: it may take one request, which then holds the slot.
    assert d.ejected(NOW + 10) == frozenset()
    d.record_attempt("a", NOW + 10)
    assert d.ejected(NOW + 10) == {"a"}
    d.record_success("a", NOW + 11)
    assert d.ejected(NOW + 11) == frozenset()
    assert [(e.kind, e.reason) for e in events] == [
        (EventKind.EJECTED, "connect"),
        (EventKind.RECOVERED, "request"),
    ]
    assert events[0].duration_s == 10.0


def test_a_failed_probe_ejects_for_longer() -> None:
    d, events = detector(ep("a"), ep("b"))
    fail(d, "a", NOW)
    d.record_attempt("a", NOW + 10)
    d.record_failure("a", FailureKind.DISCONNECT, NOW + 10.5)
    assert d.ejected(NOW + 30) == {"a"}
    assert d.ejected(NOW + 30.5) == frozenset()
    assert [e.duration_s for e in events] == [10.0, 20.0]


def test_one_client_cannot_eject_anything_however_many_requests_fail() -> None:
    # Twelve bad requests from one client, spread over both endpoints by the balancer.
    d, events = detector(ep("a"), ep("b"))
    for i in range(12):
        kind = FailureKind.HTTP_5XX if i % 3 else FailureKind.TIMEOUT
        d.record_failure("ab"[i % 2], kind, NOW + i, client="mallory")
    assert d.ejected(NOW + 12) == frozenset()
    assert events == []


def test_request_level_failures_for_two_clients_eject() -> None:
    d, events = detector(ep("a"), ep("b"))
    for client in ("alice", "alice", "bob"):
        d.record_failure("a", FailureKind.HTTP_5XX, NOW, client=client)
    assert d.ejected(NOW) == {"a"}
    assert [(e.kind, e.reason) for e in events] == [(EventKind.EJECTED, "5xx")]


def test_a_success_starts_a_new_run_with_no_clients() -> None:
    d, _ = detector(ep("a"), ep("b"))
    for client in ("alice", "bob"):
        d.record_failure("a", FailureKind.HTTP_5XX, NOW, client=client)
    d.record_success("a", NOW)
    for _ in range(5):
        d.record_failure("a", FailureKind.HTTP_5XX, NOW, client="carol")
    assert d.ejected(NOW) == frozenset()
    state = d.state("a", NOW)
    assert state is not None and state.clients == {"carol"}


def test_with_one_client_enough_every_failure_counts() -> None:
    d, _ = detector(ep("a"), ep("b"), min_failing_clients=1)
    for _ in range(3):
        d.record_failure("a", FailureKind.HTTP_5XX, NOW)
    assert d.ejected(NOW) == {"a"}


def test_the_last_routable_endpoint_of_a_model_is_never_skipped() -> None:
    d, _ = detector(ep("a", "m"), ep("b", "m", "n"), ep("c", "n"), max_ejection_percent=100.0)
    fail(d, "b", NOW)
    assert d.ejected(NOW) == {"b"}
    # a is the only other endpoint of m: its own ejection is recorded but not applied.
    fail(d, "a", NOW + 1)
    assert d.state("a", NOW + 1).passive is Passive.EJECTED  # type: ignore[union-attr]
    assert d.ejected(NOW + 1) == {"b"}
    # b's ejection is over and its probe slot free: b carries m, and a (still ejected) is skipped.
    assert d.ejected(NOW + 10) == {"a"}
    # c may go too now: n still has b.
    fail(d, "c", NOW + 10)
    assert d.ejected(NOW + 10) == {"a", "c"}


def test_a_model_named_twice_by_one_endpoint_is_still_one_endpoint() -> None:
    d, _ = detector(ep("a", "m", "m"), ep("b", "n"), max_ejection_percent=100.0)
    fail(d, "a", NOW)
    assert d.ejected(NOW) == frozenset()


def test_a_model_with_one_endpoint_keeps_it_whatever_its_health() -> None:
    d, _ = detector(ep("only", "solo"), ep("x", "m"), ep("y", "m"))
    fail(d, "only", NOW)
    for _ in range(2):
        d.record_check("only", False, NOW)
    assert d.ejected(NOW) == frozenset()


def test_at_most_max_ejection_percent_at_once() -> None:
    names = [f"e{i}" for i in range(5)]
    d, _ = detector(*(ep(n) for n in names), max_ejection_percent=50.0)
    for i, n in enumerate(names):
        fail(d, n, NOW + i)
    # floor(5 × 50%) = 2; the earliest ejected stay out first.
    assert d.ejected(NOW + 5) == {"e0", "e1"}
    d2, _ = detector(ep("a"), ep("b"), ep("c"), max_ejection_percent=10.0)
    fail(d2, "a", NOW)
    fail(d2, "b", NOW)
    # 10% of 3 rounds down to 0, but one may always go.
    assert d2.ejected(NOW) == {"a"}
    d3, _ = detector(ep("a"), ep("b"), max_ejection_percent=0.0)
    fail(d3, "a", NOW)
    assert d3.ejected(NOW) == frozenset()


def test_down_by_health_check_stays_out_before_passive_ejections() -> None:
    d, _ = detector(ep("a"), ep("b"), ep("c"), max_ejection_percent=34.0)
    fail(d, "a", NOW)
    d.record_check("b", False, NOW + 1)
    d.record_check("b", False, NOW + 1)
    assert d.ejected(NOW + 1) == {"b"}


def test_endpoints_that_take_no_requests_do_not_use_up_the_limit() -> None:
    d, _ = detector(ep("a"), ep("b"), ep("c", ready=False), ep("d", draining=True), max_ejection_percent=50.0)
    for n in "abcd":
        fail(d, n, NOW)
    # Two routable endpoints: one may be skipped; c and d are skipped for free.
    assert d.ejected(NOW) == {"a", "c", "d"}


def test_active_down_and_up() -> None:
    d, events = detector(ep("a"), ep("b"))
    d.record_check("a", False, NOW)
    assert d.ejected(NOW) == frozenset()
    d.record_check("a", False, NOW + 1)
    assert d.ejected(NOW + 1) == {"a"}
    d.record_check("a", True, NOW + 2)
    assert d.ejected(NOW + 2) == {"a"}
    d.record_check("a", True, NOW + 3)
    assert d.ejected(NOW + 3) == frozenset()
    assert [(e.kind, e.source) for e in events] == [
        (EventKind.EJECTED, "active"),
        (EventKind.RECOVERED, "active"),
    ]


def test_both_verdicts_must_clear() -> None:
    d, _ = detector(ep("a"), ep("b"))
    fail(d, "a", NOW)
    d.record_check("a", False, NOW)
    d.record_check("a", False, NOW)
    # The passive ejection ends and a check succeeds (recovering it), but one success is not
    # enough for the active verdict.
    d.record_check("a", True, NOW + 10)
    assert d.state("a", NOW + 10).passive is Passive.HEALTHY  # type: ignore[union-attr]
    assert d.ejected(NOW + 10) == {"a"}
    d.record_check("a", True, NOW + 11)
    assert d.ejected(NOW + 11) == frozenset()


def test_unknown_names_are_ignored_and_removed_endpoints_forgotten() -> None:
    d, events = detector(ep("a"), ep("b"))
    fail(d, "ghost", NOW)
    d.record_check("ghost", False, NOW)
    assert d.state("ghost", NOW) is None and events == []
    fail(d, "a", NOW)
    d.set_endpoints([ep("b"), ep("c")])
    assert d.state("a", NOW) is None
    assert d.ejected(NOW) == frozenset()
    d.set_endpoints([ep("a"), ep("b")])
    assert d.state("a", NOW) == EndpointHealth()


def test_a_new_url_under_the_same_name_starts_afresh() -> None:
    d, _ = detector(ep("a"), ep("b"))
    fail(d, "a", NOW)
    d.set_endpoints([ep("a"), ep("b")])
    assert d.ejected(NOW) == {"a"}  # same URL: kept
    d.set_endpoints([ep("a", url="http://127.0.0.2/a"), ep("b")])
    assert d.ejected(NOW) == frozenset()


def test_the_cached_answer_follows_reports_and_time() -> None:
    d, _ = detector(ep("a"), ep("b"), ep("c"))
    assert d.ejected(NOW) == frozenset()
    fail(d, "a", NOW)
    assert d.ejected(NOW) == {"a"}
    assert d.ejected(NOW + 9) == {"a"}
    assert d.ejected(NOW + 10) == frozenset()
    # An earlier time than the cached one is answered afresh too.
    assert d.ejected(NOW + 5) == {"a"}
    # A new set is seen at once: with a gone, the ejection recorded for b applies.
    fail(d, "b", NOW + 5)
    assert d.ejected(NOW + 5) == {"a"}  # the cap (one of three) holds b in
    d.set_endpoints([ep("b"), ep("c")])
    assert d.ejected(NOW + 5) == {"b"}


def test_a_broken_event_hook_does_not_break_the_reporter() -> None:
    def boom(event: HealthEvent) -> None:
        raise RuntimeError("metrics are down")

    d = OutlierDetector(CFG, on_event=boom)
    d.set_endpoints([ep("a"), ep("b")])
    fail(d, "a", NOW)
    assert d.ejected(NOW) == {"a"}


# -- invariants under any sequence of reports --------------------------------------------------

_names = st.sampled_from(["a", "b", "c", "d"])
_reports = st.lists(
    st.tuples(
        st.sampled_from(["attempt", "success", "failure", "5xx-x", "5xx-y", "check-ok", "check-failed"]),
        _names,
        st.floats(min_value=0, max_value=20, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(reports=_reports, percent=st.sampled_from([0.0, 10.0, 50.0, 100.0]))
def test_limits_hold_under_any_reports(reports: list[tuple[str, str, float]], percent: float) -> None:
    endpoints = [ep("a", "m"), ep("b", "m", "n"), ep("c", "n"), ep("d", "m", ready=False)]
    events: list[HealthEvent] = []
    d = OutlierDetector(replace(CFG, max_ejection_percent=percent), on_event=events.append)
    d.set_endpoints(endpoints)
    now = 0.0
    routable = [e for e in endpoints if e.routable]
    for kind, name, dt in reports:
        now += dt
        match kind:
            case "attempt":
                d.record_attempt(name, now)
            case "success":
                d.record_success(name, now)
            case "failure":
                d.record_failure(name, FailureKind.CONNECT, now)
            case "5xx-x" | "5xx-y":
                d.record_failure(name, FailureKind.HTTP_5XX, now, client=kind[-1])
            case "check-ok" | "check-failed":
                d.record_check(name, kind == "check-ok", now)
        out = d.ejected(now)
        skipped = [e for e in routable if e.name in out]
        assert len(skipped) <= max(math.floor(len(routable) * percent / 100), 1 if percent else 0)
        for model in ("m", "n"):
            assert any(model in e.models and e.name not in out for e in routable)
        state = d.state(name, now)
        assert state is not None and (state.passive is not Passive.EJECTED or state.until - now <= 35.0)
        assert len(state.clients) <= CFG.min_failing_clients  # bounded whatever the traffic
    # Per endpoint, a recovery only follows an ejection; the active verdict strictly alternates
    # (a failed probe ejects again with no recovery in between).
    for name in "abcd":
        for source in ("passive", "active"):
            kinds = [e.kind for e in events if e.endpoint == name and e.source == source]
            assert not kinds or kinds[0] is EventKind.EJECTED
            for before, after in itertools.pairwise(kinds):
                assert after is EventKind.EJECTED or before is EventKind.EJECTED
                assert source == "passive" or before is not after


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["attempt", "success", "failure", "check_ok", "check_bad"]),
        st.sampled_from(list(FailureKind)),
        st.sampled_from(["c1", "c2", "c3"]),
        st.floats(min_value=0.0, max_value=20.0),
    ),
    max_size=40,
)


@given(_EVENTS)
@settings(max_examples=300)
def test_the_detector_keeps_what_the_pure_steps_say(
    events: list[tuple[str, FailureKind, str, float]],
) -> None:
    # The detector skips the steps that change nothing (a healthy endpoint's attempts and
    # successes): its state must still be the fold of the pure steps, event by event.
    detector = OutlierDetector(CFG)
    detector.set_endpoints([ep("a", "m")])
    h = EndpointHealth()
    now = NOW
    for what, kind, client, wait in events:
        now += wait
        if what == "attempt":
            detector.record_attempt("a", now)
            h = on_attempt(h, now, CFG)
        elif what == "success":
            detector.record_success("a", now)
            h = on_success(h, "a", now)[0]
        elif what == "failure":
            detector.record_failure("a", kind, now, client)
            h = on_failure(h, "a", kind, now, CFG, client)[0]
        else:
            detector.record_check("a", what == "check_ok", now)
            h = on_check(h, "a", what == "check_ok", now, CFG)[0]
        assert detector.state("a", now) == settle(h, now)
