"""Which endpoints to route around, from what the proxy saw and what the health checks saw.

Two verdicts per endpoint, combined:

- passive (Envoy-style outlier ejection): `consecutive_failures` failed requests in a row eject the
  endpoint for `base_ejection_s` × the number of times it was ejected, capped at `max_ejection_s`.
  When that time has passed it is *probing* (half-open): one request may go to it, or the next
  active check decides; a success brings it back, a failure ejects it again for longer. Each
  `ejection_decay_s` spent healthy takes one off the multiplier.

  Not every failure is evidence against the endpoint. A request can earn a 5xx answer or run past
  the timeout by its own content (a prompt that trips an engine bug, a generation asked to run for
  hours), so such *request-level* failures eject only when at least `min_failing_clients`
  different clients had them in the run: one client, however many requests it sends, cannot eject
  anything. Connection failures (refused, reset, cut off) are the endpoint's own and count alone.
- active: `unhealthy_checks` failed health checks in a row mark it down, `healthy_checks`
  successes in a row mark it up again.

The per-endpoint machine is pure (`EndpointHealth` and the `on_*` functions, every time an
explicit `now`). `OutlierDetector` keeps one per endpoint and applies the fleet-wide limits when
asked which endpoints to skip: never more than `max_ejection_percent` of the routable endpoints
(at least one when the percentage is above zero), and never the last routable endpoint of a model.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

from phalanx.router.backends.hooks import call_hook
from phalanx.router.endpoints import Endpoint


class FailureKind(enum.StrEnum):
    """A request failure as the proxy reports it."""

    CONNECT = "connect"  # refused, unreachable, connect timeout
    DISCONNECT = "disconnect"  # reset or closed before the response head, or cut mid-answer
    TIMEOUT = "timeout"  # no response head in time
    HTTP_5XX = "5xx"  # the endpoint answered 500..599

    @property
    def request_level(self) -> bool:
        """Whether the request itself may have caused it, so that alone it proves nothing."""
        return self in (FailureKind.TIMEOUT, FailureKind.HTTP_5XX)


class Passive(enum.Enum):
    HEALTHY = "healthy"  # counting consecutive failures
    EJECTED = "ejected"  # skipped until `until`
    PROBING = "probing"  # ejection over: the next request or active check decides


@dataclass(frozen=True)
class OutlierConfig:
    consecutive_failures: int = 5
    base_ejection_s: float = 30.0
    max_ejection_s: float = 300.0
    # Share of the routable endpoints that may be skipped at once (one at least, when above zero).
    max_ejection_percent: float = 50.0
    # Healthy time that takes one ejection off the multiplier.
    ejection_decay_s: float = 60.0
    # A probe request that has not reported by then frees the probe slot for another request.
    probe_timeout_s: float = 60.0
    unhealthy_checks: int = 3
    healthy_checks: int = 2
    # Request-level failures (5xx answers, timeouts) eject only when this many different clients
    # had them in the run (1: any client can eject, as every failure counts).
    min_failing_clients: int = 2

    def __post_init__(self) -> None:
        for name in ("consecutive_failures", "unhealthy_checks", "healthy_checks", "min_failing_clients"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("base_ejection_s", "ejection_decay_s", "probe_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_ejection_s < self.base_ejection_s:
            raise ValueError("max_ejection_s must be at least base_ejection_s")
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError("max_ejection_percent must be within 0..100")


class EventKind(enum.Enum):
    EJECTED = "ejected"
    RECOVERED = "recovered"


@dataclass(frozen=True)
class HealthEvent:
    """An endpoint left or rejoined rotation, as one verdict sees it (the other may still hold it out).

    `source` is "passive" (request outcomes) or "active" (health checks); `reason` is the failure
    kind, "health_check", or for a recovery "request" / "health_check"; `duration_s` is the length
    of a passive ejection.
    """

    endpoint: str
    kind: EventKind
    source: Literal["passive", "active"]
    reason: str
    at: float
    duration_s: float | None = None


@dataclass(frozen=True)
class EndpointHealth:
    passive: Passive = Passive.HEALTHY
    failures: int = 0  # consecutive failed requests (while HEALTHY, or since PROBING began)
    # The run's evidence: a connection failure, and the clients with request-level failures (at
    # most `min_failing_clients` of them are kept: more change nothing).
    transport: bool = False
    clients: frozenset[str] = frozenset()
    ejections: int = 0  # the multiplier: times ejected, less decay
    until: float = 0.0  # EJECTED: when the ejection ends
    ejected_at: float = 0.0
    probe_at: float | None = None  # PROBING: when the probe request was sent
    healthy_since: float = 0.0
    up: bool = True  # the active verdict; optimistic, since discovery already said ready
    check_failures: int = 0
    check_successes: int = 0


Step = tuple[EndpointHealth, list[HealthEvent]]


def settle(h: EndpointHealth, now: float) -> EndpointHealth:
    """Apply the passage of time: an ejection whose time is over becomes probing."""
    if h.passive is Passive.EJECTED and now >= h.until:
        return replace(h, passive=Passive.PROBING, probe_at=None)
    return h


def _eject(h: EndpointHealth, name: str, reason: str, now: float, cfg: OutlierConfig) -> Step:
    previous = h.ejections
    if h.passive is Passive.HEALTHY:
        previous = max(0, previous - math.floor((now - h.healthy_since) / cfg.ejection_decay_s))
    count = previous + 1
    duration = min(cfg.base_ejection_s * count, cfg.max_ejection_s)
    ejected = replace(
        _new_run(h), passive=Passive.EJECTED, ejections=count, until=now + duration, ejected_at=now,
        probe_at=None,
    )  # fmt: skip
    return ejected, [HealthEvent(name, EventKind.EJECTED, "passive", reason, now, duration)]


def _new_run(h: EndpointHealth) -> EndpointHealth:
    return replace(h, failures=0, transport=False, clients=frozenset())


def _recover(h: EndpointHealth, name: str, reason: str, now: float) -> Step:
    healthy = replace(_new_run(h), passive=Passive.HEALTHY, probe_at=None, healthy_since=now)
    return healthy, [HealthEvent(name, EventKind.RECOVERED, "passive", reason, now)]


def on_attempt(h: EndpointHealth, now: float, cfg: OutlierConfig) -> EndpointHealth:
    """A request is being sent: while probing, it takes the probe slot if that is free."""
    h = settle(h, now)
    if h.passive is Passive.PROBING and (h.probe_at is None or now - h.probe_at >= cfg.probe_timeout_s):
        return replace(h, probe_at=now)
    return h


def on_success(h: EndpointHealth, name: str, now: float) -> Step:
    h = settle(h, now)
    if h.passive is Passive.PROBING:
        return _recover(h, name, "request", now)
    if h.passive is Passive.HEALTHY and h.failures:
        return _new_run(h), []
    # EJECTED: a late answer to a request sent before the ejection proves nothing.
    return h, []


def on_failure(
    h: EndpointHealth, name: str, kind: FailureKind, now: float, cfg: OutlierConfig, client: str = ""
) -> Step:
    """A request to the endpoint failed; `client` is who sent it (an API key's name, an address)."""
    h = settle(h, now)
    if h.passive is Passive.EJECTED:
        return h, []
    run = replace(h, failures=h.failures + 1)
    if kind.request_level:
        if len(run.clients) < cfg.min_failing_clients:
            run = replace(run, clients=run.clients | {client})
    else:
        run = replace(run, transport=True)
    proven = run.transport or len(run.clients) >= cfg.min_failing_clients
    if run.passive is Passive.PROBING:
        if proven:
            return _eject(run, name, kind.value, now, cfg)
        return replace(run, probe_at=None), []  # not conclusive: the next request probes
    if proven and run.failures >= cfg.consecutive_failures:
        return _eject(run, name, kind.value, now, cfg)
    return run, []


def on_check(h: EndpointHealth, name: str, ok: bool, now: float, cfg: OutlierConfig) -> Step:
    """One active health check: it settles a probing endpoint and moves the active verdict."""
    h = settle(h, now)
    events: list[HealthEvent] = []
    if h.passive is Passive.PROBING:
        if ok:
            h, events = _recover(h, name, "health_check", now)
        else:
            h, events = _eject(h, name, "health_check", now, cfg)
    # The counts stop at their thresholds, so a steady endpoint's state stops changing.
    if ok:
        h = replace(h, check_failures=0, check_successes=min(h.check_successes + 1, cfg.healthy_checks))
        if not h.up and h.check_successes >= cfg.healthy_checks:
            h = replace(h, up=True)
            events.append(HealthEvent(name, EventKind.RECOVERED, "active", "health_check", now))
    else:
        h = replace(h, check_successes=0, check_failures=min(h.check_failures + 1, cfg.unhealthy_checks))
        if h.up and h.check_failures >= cfg.unhealthy_checks:
            h = replace(h, up=False)
            events.append(HealthEvent(name, EventKind.EJECTED, "active", "health_check", now))
    return h, events


def wants_out(h: EndpointHealth, now: float, cfg: OutlierConfig) -> bool:
    """Whether this endpoint alone, before the fleet-wide limits, should get no new requests."""
    h = settle(h, now)
    if not h.up or h.passive is Passive.EJECTED:
        return True
    return h.passive is Passive.PROBING and h.probe_at is not None and now - h.probe_at < cfg.probe_timeout_s


def _severity(h: EndpointHealth) -> int:
    """Who stays out first when the limits cannot exclude everyone: surely down ones first."""
    if not h.up:
        return 0
    return 1 if h.passive is Passive.EJECTED else 2


def _next_change(h: EndpointHealth, now: float, cfg: OutlierConfig) -> float:
    """When `wants_out` may change with no new report."""
    if h.passive is Passive.EJECTED and h.until > now:
        return h.until
    if h.passive is Passive.PROBING and h.probe_at is not None:
        return h.probe_at + cfg.probe_timeout_s
    return math.inf


def limit(
    wanting: Iterable[tuple[str, EndpointHealth]],
    endpoints: Iterable[Endpoint],
    max_ejection_percent: float,
) -> frozenset[str]:
    """The fleet-wide limits over the endpoints that want out, most severe first.

    Only routable endpoints count: a non-routable one gets no requests anyway, so skipping it is
    free and it is always in the answer. A routable one is skipped while fewer than the cap are,
    and only if every model it serves keeps another routable endpoint that is not skipped.
    """
    routable = {ep.name: ep for ep in endpoints if ep.routable}
    cap = math.floor(len(routable) * max_ejection_percent / 100)
    if max_ejection_percent > 0:
        cap = max(cap, 1)
    left: Counter[str] = Counter(m for ep in routable.values() for m in set(ep.models))
    out: set[str] = set()
    skipped = 0
    order = sorted(wanting, key=lambda item: (_severity(item[1]), item[1].ejected_at, item[0]))
    for name, _ in order:
        ep = routable.get(name)
        if ep is None:
            out.add(name)
            continue
        if skipped >= cap or any(left[m] <= 1 for m in ep.models):
            continue
        for m in set(ep.models):
            left[m] -= 1
        out.add(name)
        skipped += 1
    return frozenset(out)


class OutlierDetector:
    """Per-endpoint health verdicts and the set of endpoints to skip; no I/O, every time passed in.

    Give it the endpoint set (with models resolved) on every change through `set_endpoints`:
    reports about names it does not know are ignored, and an endpoint whose URL changed starts
    afresh. Use one clock for every `now` (`time.monotonic` in the router).
    """

    def __init__(
        self, config: OutlierConfig | None = None, on_event: Callable[[HealthEvent], None] | None = None
    ) -> None:
        self.config = config or OutlierConfig()
        self._on_event = on_event
        self._endpoints: tuple[Endpoint, ...] = ()
        self._states: dict[str, tuple[str, EndpointHealth]] = {}
        # ejected(now) answers from here until a report, a new set, or the time it holds to.
        self._cached: tuple[frozenset[str], float, float] | None = None

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        self._endpoints = tuple(endpoints)
        states: dict[str, tuple[str, EndpointHealth]] = {}
        for ep in self._endpoints:
            known = self._states.get(ep.name)
            if known is None or known[0] != ep.url:
                known = (ep.url, EndpointHealth())
            states[ep.name] = known
        self._states = states
        self._cached = None

    def state(self, name: str, now: float) -> EndpointHealth | None:
        known = self._states.get(name)
        return None if known is None else settle(known[1], now)

    def record_attempt(self, name: str, now: float) -> None:
        """Call when a request is sent to `name`: a probing endpoint then takes no other until it reports."""
        known = self._states.get(name)
        if known is None or known[1].passive is Passive.HEALTHY:
            return  # `on_attempt` changes nothing while healthy: no step per request
        self._apply(name, lambda h: (on_attempt(h, now, self.config), []))

    def record_success(self, name: str, now: float) -> None:
        """The endpoint answered below 500 (call it when the response head arrives)."""
        known = self._states.get(name)
        if known is None or (known[1].passive is Passive.HEALTHY and not known[1].failures):
            return  # `on_success` changes nothing while healthy with no failure run: the usual case
        self._apply(name, lambda h: on_success(h, name, now))

    def record_failure(self, name: str, kind: FailureKind, now: float, client: str = "") -> None:
        """A request from `client` (an API key's name, an address; "" when not known) failed."""
        self._apply(name, lambda h: on_failure(h, name, kind, now, self.config, client))

    def record_check(self, name: str, ok: bool, now: float) -> None:
        """One active health check result."""
        self._apply(name, lambda h: on_check(h, name, ok, now, self.config))

    def ejected(self, now: float) -> frozenset[str]:
        """The endpoints to give no new request now, limits applied."""
        if self._cached is not None:
            answer, since, until = self._cached
            if since <= now < until:
                return answer
        wanting = [(name, h) for name, (_, h) in self._states.items() if wants_out(h, now, self.config)]
        answer = limit(wanting, self._endpoints, self.config.max_ejection_percent) if wanting else frozenset()
        changes = (_next_change(h, now, self.config) for _, h in self._states.values())
        until = min(changes, default=math.inf)
        self._cached = (answer, now, until)
        return answer

    def _apply(self, name: str, step: Callable[[EndpointHealth], Step]) -> None:
        known = self._states.get(name)
        if known is None:
            return
        url, h = known
        new, events = step(h)
        if new is not h and new != h:  # most steps give back the same object: no field compare
            self._states[name] = (url, new)
            self._cached = None
        for event in events:
            # A broken metrics hook must not break the proxy that reported the outcome.
            call_hook(self._on_event, event)
