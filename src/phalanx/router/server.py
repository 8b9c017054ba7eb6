"""The router: an aiohttp server that picks an entry pod per request and relays the answer.

Imperative shell around pure decisions (`policies`, `admission`, `backends.outlier`, `ratelimit`):
it owns the in-flight counters, the shared client session, the learned model lists, the engine
metrics scraper and health checker, and the retry loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from phalanx.http.errors import error_response, middleware
from phalanx.http.guard import ConnectionGuard, GuardLimits, default_max_connections
from phalanx.http.site import GuardedSite
from phalanx.router.admission import (
    PRIORITY_HEADER,
    QUEUE_TIMEOUT_HEADER,
    Admission,
    AdmissionConfig,
    Priority,
    parse_priority,
    parse_queue_timeout,
)
from phalanx.router.auth import KeyStore
from phalanx.router.backends import (
    FailureKind,
    HealthChecker,
    HealthEvent,
    LoadScraper,
    OutlierConfig,
    OutlierDetector,
    ScrapeEvent,
)
from phalanx.router.balancer import Availability, availability, served_models
from phalanx.router.bodies import BodyBudget, BodyLimits, Held, read_body
from phalanx.router.client import ClientReply, ClientRequest, close_when_answered
from phalanx.router.declared import Declared
from phalanx.router.endpoints import Endpoint, check_unique
from phalanx.router.front import Front
from phalanx.router.logs import AccessLog, access_line, failure, server_logger
from phalanx.router.messages import (
    RequestError,
    model_cards,
    models_from_listing,
    no_endpoint,
    request_id,
    unknown_model,
    upstream_request_headers,
)
from phalanx.router.metrics import CLIENT_CLOSED, NO_ENDPOINT, UNKNOWN_MODEL, RelayTimer, RouterMetrics
from phalanx.router.parsepool import Parser
from phalanx.router.parsing import Question, Summary
from phalanx.router.pdbodies import (
    ClientBody,
    decode_json,
    new_bootstrap_room,
    sglang_bodies,
    vllm_decode_body,
    vllm_prefill_body,
)
from phalanx.router.pdflow import KV_LOAD_FAILED, FallbackReason, sglang_prefill, vllm_prefill
from phalanx.router.policies import (
    DEFAULT_POLICY,
    POLICY_HEADER,
    POLICY_NAMES,
    SESSION_HEADER,
    BackendState,
    Decision,
    Policy,
    PolicyConfig,
    PolicySet,
    candidates,
    unknown_policy_message,
)
from phalanx.router.policies.pd import PdConfig, answering_states, decode_candidates, pairable, plan_prefill
from phalanx.router.prefillledger import PrefillLedger
from phalanx.router.proxy import Outcome, relay
from phalanx.router.ratelimit import Grant, RateLimiter
from phalanx.router.rejection import Rejection
from phalanx.router.upstream import UpstreamError, UpstreamPool
from phalanx.router.upstream_session import UpstreamResponse, Upstreams
from phalanx.router.usage import UsageTap
from phalanx.router.webui import (
    StateProvider,
    StateStreams,
    StreamLimits,
    asset_handler,
    key_still_valid,
    state_response,
)
from phalanx.router.webview import EndpointLoad, build_view

logger = logging.getLogger("phalanx.router")
access_logger = logging.getLogger("phalanx.router.access")

PROXIED_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/embeddings")
FRONTS = ("httptools", "aiohttp")

_SESSION_KEY = web.AppKey("session", aiohttp.ClientSession)


@dataclass(frozen=True)
class RouterConfig:
    connect_timeout_s: float = 5.0
    # Whole request, streaming included; long generations take minutes.
    total_timeout_s: float | None = 1800.0
    # Proxied requests to http:// endpoints on the router's own pooled client (`upstream`);
    # False: on the aiohttp session, like https endpoints always are.
    upstream_pool: bool = True
    # Who serves the proxied paths: the router's own front on httptools (`router/front.py`,
    # every other request handed to aiohttp on the same connection), or aiohttp itself.
    front: str = "httptools"
    max_attempts: int = 3
    retry_after_s: int = 1
    # How long `stop()` waits for in-flight requests before cancelling them.
    drain_timeout_s: float = 30.0
    models_timeout_s: float = 5.0
    # Do not ask an endpoint for its models more often than this after a failure.
    models_retry_s: float = 2.0
    # Limits on what one client can make the router hold or wait for (docs/router.md, "Limits").
    # A decoded request body above this gets 413: a 1M-token prompt as text or token ids, or a
    # few base64 images, fit.
    client_max_size: int = 16 * 2**20
    # The whole body must arrive within this of its head; then 408 and the connection closes.
    body_timeout_s: float | None = 60.0
    # All request bodies held at once (read, or kept for retries while proxied); more: 503.
    max_held_body_bytes: int = 256 * 2**20
    # Bodies up to this size are parsed on the event loop; larger ones in a worker process whose
    # address space is capped at `parse_memory_bytes` (None: no cap). 0 processes: all in-process.
    parse_in_process_max_bytes: int = 32 * 2**10
    parse_processes: int = 1
    parse_memory_bytes: int | None = 2**30
    # Client connections: open at once (None: half the open-file limit, at most 10,000), the
    # time a request head may take once begun, and how long an idle connection is kept.
    max_connections: int | None = None
    head_timeout_s: float = 10.0
    idle_timeout_s: float = 75.0
    access_log: bool = False
    # Routing: the policy unless a request names another in `x-routing-policy` (docs/router.md).
    policy: str = DEFAULT_POLICY
    policy_config: PolicyConfig = field(default_factory=PolicyConfig)
    # Prefill/decode disaggregation: when prefill is skipped, its timeout (docs/router.md).
    pd: PdConfig = field(default_factory=PdConfig)
    session_header: str = SESSION_HEADER
    # Per-endpoint concurrency caps and the priority queue in front of them.
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    # Models whose requests wait in that queue while no endpoint serves them (scale from zero),
    # besides those the ModelServings declare (`set_declared`).
    hold_models: tuple[str, ...] = ()
    # API keys: a key file or a mounted Secret directory; None is no authentication.
    api_keys: Path | str | None = None
    api_keys_reload_s: float = 5.0
    # Engine metrics (`/metrics`: waiting, running, KV usage) scraped this often; None: not at all.
    scrape_interval_s: float | None = 1.0
    # Active health checks (`GET /health`) this often; None: passive checks only.
    health_check_interval_s: float | None = 5.0
    outlier: OutlierConfig = field(default_factory=OutlierConfig)
    # The web view's live streams (`GET /ui/events`): how many at once, how often they look.
    ui_streams: StreamLimits = field(default_factory=StreamLimits)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.policy not in POLICY_NAMES:
            raise ValueError(unknown_policy_message(self.policy))
        positive = ("client_max_size", "max_held_body_bytes", "head_timeout_s", "idle_timeout_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.body_timeout_s is not None and self.body_timeout_s <= 0:
            raise ValueError("body_timeout_s must be positive or None")
        if self.front not in FRONTS:
            raise ValueError(f"front must be one of {', '.join(FRONTS)}, not {self.front!r}")
        if any(not name.strip() for name in self.hold_models):
            raise ValueError("hold_models: a model name may not be empty")


class _NothingLeft(Exception):
    """Every endpoint serving the model was tried (or none is left): stop retrying."""


# phalanx_router_errors kind of each Rejection code; other 400s are bad requests.
_REJECTION_KINDS = {
    "invalid_api_key": "unauthorized",
    "rate_limit_exceeded": "rate_limited",
    "queue_full": "queue_full",
    "queue_timeout": "queue_timeout",
    "request_too_large": "body_too_large",
    "request_timeout": "body_timeout",
    "server_busy": "server_busy",
    "unsupported_content_encoding": "bad_request",
}


def _rejection_kind(rejection: Rejection) -> str:
    return _REJECTION_KINDS.get(
        rejection.code or "", "bad_request" if rejection.status == 400 else "rejected"
    )


@dataclass(frozen=True)
class _Abandoned:
    """An attempt given up before any byte reached the client."""

    reason: str


class _Tally:
    """What one request's metrics are labelled with, filled in as routing proceeds. A plain class:
    a dataclass's `__init__` is generated Python even when compiled (one interpreted call per
    request; bench/router/results.md)."""

    __slots__ = (
        "attempts",
        "client",
        "code",
        "endpoint",
        "error",
        "key",
        "model",
        "prefilled",
        "request_id",
        "response_headers",
        "usage",
    )

    def __init__(self, request_id: str = "") -> None:
        self.model = ""
        self.endpoint = NO_ENDPOINT
        self.code: int | None = None
        self.error = ""  # the kind, for phalanx_router_errors; empty when the request succeeded
        self.request_id = request_id
        # Who sent it, for the outlier detector: its API key's name, else the peer's address.
        self.client = ""
        self.attempts = 0
        self.key: str | None = None  # the API key's name, for the per-key usage metrics
        self.usage: UsageTap | None = None  # the engine's token counts: key budgets and per-key usage
        self.response_headers: dict[str, str] = {}  # added to the relayed answer
        # vLLM prefill/decode: the prefill engine and the kv_transfer_params it answered, kept while
        # they may still be pulled, so a decode retry on another endpoint does not prefill again.
        self.prefilled: tuple[Endpoint, dict[str, Any]] | None = None


@dataclass(frozen=True)
class _Leg:
    """One attempt at a request for a disaggregated model, sent to its decode (or aggregated)
    endpoint; `body` is the client's own."""

    request: ClientRequest
    decode: Endpoint
    body: bytes
    headers: list[tuple[str, str]]
    tally: _Tally
    started: float


@dataclass(frozen=True)
class _Pair(_Leg):
    """A leg with a prefill engine chosen; `client` is the body the two requests are made of."""

    prefill: Endpoint
    client: ClientBody
    prompt_tokens: int
    # Give up on the prefill step after this long: the timeout past its expected queue and time.
    prefill_budget_s: float

    @property
    def chat(self) -> bool:
        return self.request.path.endswith("/chat/completions")

    @property
    def prefill_url(self) -> str:
        return self.prefill.url + self.request.rel_url.raw_path_qs


_ModelKey = tuple[str, str]


def _key(ep: Endpoint) -> _ModelKey:
    return (ep.name, ep.url)


class Router:
    def __init__(self, config: RouterConfig | None = None) -> None:
        self.config = config or RouterConfig()
        self.metrics = RouterMetrics()
        self._endpoints: tuple[Endpoint, ...] = ()
        self._endpoint_names: frozenset[str] = frozenset()  # of `_endpoints`, for `_leave`
        self._in_flight: dict[str, int] = {}
        # `_states`' last build per endpoint name: (endpoint, in flight, reading, healthy, at
        # capacity, state), bounded by the endpoints seen since its last clear.
        self._state_memo: dict[str, tuple[Endpoint, int, object, bool, bool, BackendState]] = {}
        self._prefills = PrefillLedger()
        self._declared = Declared(frozenset(self.config.hold_models))
        # Models with a `phalanx_router_held_requests` series, so it reads 0 once they are served.
        self._held_labels: set[str] = set()
        # Told the model of each request that starts waiting for a first endpoint, so an
        # autoscaler in the same process can start one at once instead of at its next pass.
        self.on_held: Callable[[str], None] | None = None
        self.policies = PolicySet(self.config.policy_config, default=self.config.policy)
        self.admission = Admission(self.config.admission)
        # KeyFileError here (a broken key source at start) is the caller's to report.
        self.keys = KeyStore(self.config.api_keys)
        self.limiter = RateLimiter()
        self.bodies = BodyBudget(self.config.max_held_body_bytes)
        self._body_limits = BodyLimits(self.config.client_max_size, self.config.body_timeout_s)
        self.parser = Parser(
            self.config.parse_in_process_max_bytes,
            self.config.parse_processes,
            self.config.parse_memory_bytes,
        )
        max_connections = self.config.max_connections or default_max_connections()
        self.guard = ConnectionGuard(GuardLimits(max_connections, self.config.head_timeout_s))
        self.detector = OutlierDetector(self.config.outlier, on_event=self._health_event)
        self._scraper: LoadScraper | None = None
        self._checker: HealthChecker | None = None
        self._key_poller: asyncio.Task[None] | None = None
        self._learned: dict[_ModelKey, tuple[str, ...]] = {}
        # `endpoints()` with learned models filled in; rebuilt only when discovery or learning
        # changes it, not on every request.
        self._resolved: tuple[Endpoint, ...] | None = None
        # Whether `_resolved` was built with every model list known (declared or learned).
        self._nothing_to_learn = False
        self._learning: dict[_ModelKey, asyncio.Task[None]] = {}
        self._learn_failed_at: dict[_ModelKey, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._upstreams: Upstreams | None = None
        self._runner: web.AppRunner | None = None
        self._front: Front | None = None
        self._url: str | None = None
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        # SGLang bootstrap rooms: unpredictable, so two routers never pick the same one.
        self._rooms = random.SystemRandom()
        # The web view's servings, pods, policies and events (`phalanx up` or the discovery wires it).
        self.state_provider: StateProvider | None = None
        self.ui_streams = StateStreams(self.config.ui_streams)
        self._access = AccessLog(access_logger)

    # -- discovery -------------------------------------------------------------------------

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoint set. Removed endpoints are not interrupted: their requests finish."""
        new = check_unique(endpoints)
        # A pod replaced under the same name and address may serve other models: what was learned
        # from it holds only while it stays ready.
        keys = {_key(ep) for ep in new if ep.ready}
        for stale in [k for k in self._learned if k not in keys]:
            del self._learned[stale]
        for stale in [k for k in self._learn_failed_at if k not in keys]:
            del self._learn_failed_at[stale]
        names = {ep.name for ep in new}
        for ep in self._endpoints:
            if ep.name not in names and self._in_flight.get(ep.name, 0) == 0:
                self._in_flight.pop(ep.name, None)
                self.metrics.forget_endpoint(ep.name)
        for ep in new:
            self._in_flight.setdefault(ep.name, 0)
            self.metrics.gauge(self.metrics.in_flight, ep.name).set(self._in_flight[ep.name])
            self.metrics.know_endpoint(ep.name)
        now = time.monotonic()
        urls = {ep.name: ep.url for ep in new}
        for ep in self._endpoints:
            if urls.get(ep.name) != ep.url:  # gone, or a new pod under the same name
                self.policies.forget(ep.name, now)
                self._prefills.forget(ep.name)
        self._endpoints = new
        self._endpoint_names = frozenset(names)
        self._resolved = None
        self._backends_changed()
        if self._session is not None:
            self._start_learning()

    def set_declared(self, declared: Declared) -> None:
        """Replace what the ModelServings declare (`hold_models` stay). Waiters for a model no
        longer declared or served get their 503 now."""
        declared = declared.with_models(self.config.hold_models)
        if declared != self._declared:
            self._declared = declared
            self.admission.wake()

    @property
    def declared(self) -> Declared:
        return self._declared

    def held(self) -> dict[str, int]:
        """Requests waiting per declared model that nothing routable serves (only models with some)."""
        endpoints = self.endpoints()
        return {
            model: count
            for model, count in self.admission.waiting_by_model().items()
            if availability(endpoints, model, self._declared) is Availability.HELD
        }

    def _backends_changed(self) -> None:
        """Tell the parts that follow the endpoint set (with models resolved) about a change."""
        resolved = self.endpoints()
        if self._checker is not None:
            self._checker.update(resolved)  # passes the set on to the detector
        else:
            self.detector.set_endpoints(resolved)
        if self._scraper is not None:
            self._scraper.update(resolved)
        self.admission.wake()

    def in_flight(self) -> dict[str, int]:
        """Requests being proxied per endpoint name, including removed endpoints still finishing."""
        return dict(self._in_flight)

    def endpoints(self) -> tuple[Endpoint, ...]:
        """The current set with learned model lists filled in."""
        if self._resolved is None:
            self._nothing_to_learn = all(ep.models or _key(ep) in self._learned for ep in self._endpoints)
            self._resolved = tuple(
                ep if ep.models else replace(ep, models=self._learned.get(_key(ep), ()))
                for ep in self._endpoints
            )
        return self._resolved

    # -- lifecycle -------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        # The guard's middleware first: a connection is in a request until its answer is written.
        app = web.Application(
            middlewares=[middleware(self.guard.track), middleware(self._errors)],
            client_max_size=self.config.client_max_size,
        )
        # Signals, not a cleanup context: an async generator cannot be compiled (docs/architecture.md).
        app.on_startup.append(self._open_session)
        app.on_cleanup.append(self._close_session)
        for path in PROXIED_PATHS:
            app.router.add_post(path, self._proxy)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/debug/endpoints", self._debug_endpoints)
        app.router.add_get("/debug/demand", self._debug_demand)
        app.router.add_get("/ui", asset_handler("index.html"))
        app.router.add_get("/ui/app.js", asset_handler("app.js"))
        app.router.add_get("/ui/app.css", asset_handler("app.css"))
        app.router.add_get("/ui/state", self._ui_state)
        app.router.add_get("/ui/events", self._ui_events)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("router already started")
        self._stopping = False
        self.ui_streams.reopen()
        runner = web.AppRunner(
            self.build_app(),
            # Cancel the handler (and so the upstream request) when the client disconnects.
            handler_cancellation=True,
            access_log=None,  # ours is `_log_request`: structured, with the request id
            logger=server_logger,
            shutdown_timeout=1.0,
            # Idle keep-alive connections, and those whose first request never completes, close.
            keepalive_timeout=self.config.idle_timeout_s,
            # Bodies are decoded by `read_body`, within the size limit as they inflate.
            auto_decompress=False,
        )
        await runner.setup()
        front = None
        if self.config.front == "httptools":
            front = self._front = Front(self.handle, PROXIED_PATHS, self.config.idle_timeout_s)
        site = GuardedSite(runner, host, port, self.guard, front.protocol if front is not None else None)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._access.open()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self._url = f"http://{shown}:{bound_port}"
        logger.info("router listening on %s", self._url)

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (bounded), then close everything."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        self.ui_streams.close()  # open web view pages must not hold the drain up
        self.admission.wake()  # requests held for a model at zero get their 503 now, not at the bound
        for site in list(runner.sites):
            await site.stop()
        front, self._front = self._front, None
        if front is not None:
            front.drain()  # idle kept-alive connections close now, busy ones after their answer
        bound = self.config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        try:
            await asyncio.wait_for(self._idle.wait(), bound)
        except TimeoutError:
            logger.warning("router stopping with %d requests still in flight", self._active)
        if front is not None:
            front.close()  # cancels what is still in flight, as aiohttp's shutdown does
        await runner.cleanup()
        self._access.close()  # after the last request's line
        self._url = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("router not started")
        return self._url

    async def _open_session(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(
            # No cap: engines queue internally, and a pool cap here would queue invisibly.
            limit=0,
            keepalive_timeout=30.0,
            enable_cleanup_closed=False,
        )
        timeout = aiohttp.ClientTimeout(
            total=self.config.total_timeout_s, sock_connect=self.config.connect_timeout_s
        )
        # auto_decompress off: bodies are relayed byte for byte with their Content-Encoding.
        # No cookie jar: a cookie one client's answer sets must never ride on another's request.
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app[_SESSION_KEY] = session
        self._session = session
        pool = None
        if self.config.upstream_pool:
            pool = UpstreamPool(
                connect_timeout_s=self.config.connect_timeout_s,
                total_timeout_s=self.config.total_timeout_s,
                idle_timeout_s=30.0,
            )
        self._upstreams = Upstreams(session, pool)
        if self.config.scrape_interval_s is not None:
            self._scraper = LoadScraper(
                session, interval_s=self.config.scrape_interval_s, on_scrape=self._scraped
            )
        if self.config.health_check_interval_s is not None:
            self._checker = HealthChecker(
                session, self.detector, interval_s=self.config.health_check_interval_s
            )
        if self.keys.enabled:
            self._key_poller = asyncio.get_running_loop().create_task(
                # Budgets of keys no longer configured are forgotten.
                self.keys.poll(
                    self.config.api_keys_reload_s,
                    on_reload=lambda keys: self.limiter.retain(k.name for k in keys),
                )
            )
        self._backends_changed()
        self._start_learning()

    async def _close_session(self, app: web.Application) -> None:
        session, self._session = self._session, None
        upstreams, self._upstreams = self._upstreams, None
        tasks = list(self._learning.values())
        if self._key_poller is not None:
            tasks.append(self._key_poller)
            self._key_poller = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._learning.clear()
        for part in (self._scraper, self._checker):
            if part is not None:
                await part.close()
        self._scraper = self._checker = None
        await self.parser.close()
        if upstreams is not None and upstreams.pool is not None:
            await upstreams.pool.close()
        if session is not None:
            await session.close()

    # -- models ----------------------------------------------------------------------------

    def _start_learning(self) -> list[asyncio.Task[None]]:
        """Ask endpoints with unknown models for their `/v1/models`, at most one call each at a time."""
        now = time.monotonic()
        tasks = []
        for ep in self._endpoints:
            key = _key(ep)
            if ep.models or key in self._learned or not ep.ready:
                continue
            task = self._learning.get(key)
            if task is None:
                failed = self._learn_failed_at.get(key)
                if failed is not None and now - failed < self.config.models_retry_s:
                    continue
                task = asyncio.get_running_loop().create_task(self._learn(ep))
                self._learning[key] = task
            tasks.append(task)
        return tasks

    async def _learn(self, ep: Endpoint) -> None:
        key = _key(ep)
        session = self._session
        try:
            if session is None:
                return
            timeout = aiohttp.ClientTimeout(total=self.config.models_timeout_s)
            async with session.get(f"{ep.url}/v1/models", timeout=timeout) as resp:
                payload = await resp.json(content_type=None) if resp.status == 200 else None
            models = models_from_listing(payload)
            if not models:
                raise ValueError(f"no models in the answer (status {resp.status})")
            if any(_key(cur) == key for cur in self._endpoints):
                self._learned[key] = models
                self._resolved = None
                self._learn_failed_at.pop(key, None)
                self._backends_changed()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._learn_failed_at[key] = time.monotonic()
            logger.warning("could not learn the models of %s at %s: %s", ep.name, ep.url, exc or type(exc))
        finally:
            self._learning.pop(key, None)

    async def _resolve_models(self) -> None:
        if self._resolved is not None and self._nothing_to_learn:
            return  # every model list is known: no pass over the endpoints per request
        tasks = self._start_learning()
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.models_timeout_s)

    # -- handlers --------------------------------------------------------------------------

    async def _errors(
        self,
        request: web.Request,
        handler: Handler,
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return error_response(exc.status, exc.reason, headers=allow)
        except Exception as exc:
            logger.error("unexpected error on %s %s: %s", request.method, request.path, failure(exc))
            return error_response(500, "The router failed to handle the request.")

    async def _health(self, request: web.Request) -> web.Response:
        """200 while the router is up and some endpoint can take requests; the body says how many."""
        ejected = self.detector.ejected(time.monotonic())
        routable = [ep for ep in self._endpoints if ep.routable]
        healthy = [ep for ep in routable if ep.name not in ejected]
        status = 200 if routable and not self._stopping else 503
        body = {
            "status": "ok" if status == 200 else "stopping" if self._stopping else "no_ready_backend",
            "backends": len(self._endpoints),
            "ready_backends": len(routable),
            "ejected_backends": len(routable) - len(healthy),
            "queued_requests": sum(self.admission.queue_depth().values()),
        }
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        for priority, depth in self.admission.queue_depth().items():
            self.metrics.queue_depth.labels(priority).set(depth)
        held = self.held()
        self._held_labels |= held.keys() | self._declared.models
        for model in self._held_labels:
            self.metrics.held.labels(model).set(held.get(model, 0))
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        """The 401 for a request without a valid key (when keys are on), else None."""
        try:
            self.keys.authenticate(request.headers.get("Authorization"))
        except Rejection as rejection:
            self.metrics.errors.labels(_rejection_kind(rejection)).inc()
            return rejection.response()
        return None

    async def _debug_endpoints(self, request: web.Request) -> web.Response:
        """What discovery pushed in (learned models filled in), for people and tests: read-only.
        Behind the API keys: it shows backend addresses."""
        if (refused := self._unauthorized(request)) is not None:
            return refused
        return web.json_response(
            {
                "endpoints": [
                    {
                        "name": ep.name,
                        "url": ep.url,
                        "serving": ep.serving,
                        "group_index": ep.group_index,
                        "models": list(ep.models),
                        "ready": ep.ready,
                        "draining": ep.draining,
                        "routable": ep.routable,
                        "in_flight": self._in_flight.get(ep.name, 0),
                        "pd_role": ep.pd_role,
                        "pd_protocol": ep.pd_protocol if ep.pd_role else None,
                        "pd_pair_key": ep.pd_pair_key if ep.pd_role else None,
                        "bootstrap_port": ep.bootstrap_port,
                    }
                    for ep in self.endpoints()
                ]
            }
        )

    async def _debug_demand(self, request: web.Request) -> web.Response:
        """Per declared or waited-for model: what waits, and for how many routable endpoints."""
        if (refused := self._unauthorized(request)) is not None:
            return refused
        waiting = self.admission.waiting_by_model()
        held = self.held()
        endpoints = self.endpoints()
        models = sorted(self._declared.models.union(waiting))
        return web.json_response(
            {
                "complete": self._declared.complete,
                "models": [
                    {
                        "model": model,
                        "declared": model in self._declared.models,
                        "routable_endpoints": sum(
                            1 for ep in endpoints if ep.routable and model in ep.models
                        ),
                        "waiting": waiting.get(model, 0),
                        "held": held.get(model, 0),
                    }
                    for model in models
                ],
            }
        )

    def endpoint_loads(self) -> list[EndpointLoad]:
        """Each endpoint as the router sees it: routable, healthy, in flight and the engine's load."""
        now = time.monotonic()
        ejected = self.detector.ejected(now)
        loads = []
        for ep in self.endpoints():
            load = self._scraper.reading(ep.name, now) if self._scraper is not None else None
            loads.append(
                EndpointLoad(
                    name=ep.name,
                    routable=ep.routable,
                    in_flight=self._in_flight.get(ep.name, 0),
                    healthy=ep.name not in ejected,
                    waiting=load.waiting if load is not None else None,
                    running=load.running if load is not None else None,
                    kv_cache_usage=load.kv_cache_usage if load is not None else None,
                )
            )
        return loads

    async def _ui_state(self, request: web.Request) -> web.Response:
        """The web view's document (docs/router.md, "Web view"): behind the API keys, read-only."""
        if (refused := self._unauthorized(request)) is not None:
            return refused
        return state_response(await self._ui_document())

    async def _ui_events(self, request: web.Request) -> web.StreamResponse:
        """The web view's document as Server-Sent Events, each time it changes; behind the API keys."""
        if (refused := self._unauthorized(request)) is not None:
            return refused
        allowed = key_still_valid(self.keys, request.headers.get("Authorization"))
        return await self.ui_streams.serve(request, self._ui_document, allowed)

    async def _ui_document(self) -> dict[str, Any]:
        provider = self.state_provider
        snapshot = await provider.snapshot() if provider is not None else {}
        document = build_view(snapshot, self.endpoint_loads(), source=provider.source if provider else "none")
        document["queued"] = self.admission.queue_depth()
        document["held"] = self.held()
        return document

    async def _models(self, request: web.Request) -> web.Response:
        if (refused := self._unauthorized(request)) is not None:
            return refused
        await self._resolve_models()
        return web.json_response(model_cards(served_models(self.endpoints()), int(time.time())))

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        """aiohttp's handler of the proxied paths (with `front="aiohttp"`)."""
        reply = await self.handle(request)
        assert isinstance(reply, web.StreamResponse)  # made by aiohttp's own request
        return reply

    async def handle(self, request: ClientRequest) -> ClientReply:
        """A proxied request, served by either front: routed, relayed, counted and logged."""
        if self._active == 0:  # set only while none is active: clearing it again is a Python call
            self._idle.clear()
        self._active += 1
        started = time.monotonic()
        tally = _Tally(request_id=request_id(request.headers))
        try:
            response = await self._route(request, started, tally)
            if tally.code is None:
                tally.code = response.status
            if not response.prepared:  # the router's own answers carry the id too
                response.headers.setdefault("X-Request-Id", tally.request_id)
            return response
        finally:
            # No code means the handler was cancelled: the client went away.
            code = CLIENT_CLOSED if tally.code is None else tally.code
            self.metrics.counter(self.metrics.requests, tally.model, tally.endpoint, str(code)).inc()
            self.metrics.key_usage.record(tally.key, code, tally.usage.usage if tally.usage else None)
            if code == CLIENT_CLOSED:
                tally.error = "client_gone"
            if tally.error:
                self.metrics.counter(self.metrics.errors, tally.error).inc()
            if tally.model and tally.model != UNKNOWN_MODEL:
                self.metrics.histogram(self.metrics.latency, tally.model, tally.endpoint).observe(
                    time.monotonic() - started
                )
            if self.config.access_log:
                _log_request(self._access, request, tally, code, time.monotonic() - started)
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _route(self, request: ClientRequest, started: float, tally: _Tally) -> ClientReply:
        if self._stopping:
            return _error(no_endpoint("any model", self.config.retry_after_s))
        held = self.bodies.hold()  # the body's bytes, until the request is answered
        try:
            return await self._read_and_route(request, started, tally, held)
        finally:
            held.release()

    async def _read_and_route(
        self, request: ClientRequest, started: float, tally: _Tally, held: Held
    ) -> ClientReply:
        grant: Grant | None = None
        try:
            key = self.keys.authenticate(request.headers.get("Authorization"))
            tally.client = key.name if key is not None else (request.remote or "")
            tally.key = key.name if key is not None else None
            tally.usage = UsageTap()
            try:
                body = await read_body(request, self._body_limits, held)
            except Rejection as rejection:
                if rejection.status == 408:
                    close_when_answered(request)  # the rest of a body this slow is not worth reading
                raise
            wants_tokens = key is not None and bool(key.requests_per_minute or key.tokens_per_minute)
            question = Question(
                _routing_headers(request, self.config.session_header),
                self.config.session_header,
                self.config.policy_config.prefix_chars,
                wants_tokens,
            )
            summary = await self.parser.summarize(body, question)
            if isinstance(summary, RequestError):
                tally.error = {400: "bad_request", 413: "body_too_large"}.get(summary.status, "server_busy")
                return _error(summary)
            priority = parse_priority(request.headers.get(PRIORITY_HEADER))
            if key is not None:  # without keys every client is trusted alike (docs/router.md)
                priority = key.priority(priority)
            queue_timeout = parse_queue_timeout(
                request.headers.get(QUEUE_TIMEOUT_HEADER), self.config.admission
            )
            routing = summary.routing
            try:
                policy = self.policies.policy(routing.policy)
            except ValueError as exc:
                raise Rejection(
                    400, str(exc), code="invalid_routing_policy", param="x-routing-policy"
                ) from None
            if key is not None and wants_tokens:
                grant = self.limiter.admit(key, summary.tokens, time.monotonic())
                tally.response_headers.update(grant.headers)
        except Rejection as rejection:
            tally.error = _rejection_kind(rejection)
            return rejection.response()
        answered: ClientReply | None = None
        try:
            response = answered = await self._admitted(
                request, body, summary, policy, priority, queue_timeout, tally, started
            )
        finally:
            if grant is not None:
                status = answered.status if answered is not None else None
                self.limiter.settle(grant, _tokens_used(grant, tally.usage, status), time.monotonic())
        if not response.prepared:  # the router's own answers; relayed ones got them in `relay`
            response.headers.update(tally.response_headers)
        return response

    async def _admitted(
        self,
        request: ClientRequest,
        body: bytes,
        summary: Summary,
        policy: Policy,
        priority: Priority,
        queue_timeout: float,
        tally: _Tally,
        started: float,
    ) -> ClientReply:
        model, routing = summary.model, summary.routing
        await self._resolve_models()
        endpoints = self.endpoints()
        match availability(endpoints, model, self._declared):
            case Availability.UNKNOWN:
                tally.model = UNKNOWN_MODEL
                tally.error = "unknown_model"
                return _error(unknown_model(model))
            case Availability.UNAVAILABLE:
                # Only names some endpoint declares become metric labels: a client's typo must not
                # grow the metrics without bound while nothing is routable.
                known = any(model in ep.models for ep in endpoints)
                tally.model = model if known else UNKNOWN_MODEL
                self.metrics.no_endpoint.labels(tally.model).inc()
                tally.error = "no_endpoint"
                return _error(no_endpoint(model, self.config.retry_after_s))
            case Availability.HELD:
                tally.model = model
                if self.on_held is not None:
                    self.on_held(model)
            case Availability.ROUTABLE:
                tally.model = model
        self.metrics.counter(self.metrics.arrivals, model).inc()
        self.metrics.counter(self.metrics.arrival_prompt_tokens, model).inc(summary.prompt_tokens)

        rid = tally.request_id
        drop = ("authorization",) if self.keys.enabled else ()  # the router's key is not the engine's
        headers = upstream_request_headers(request.headers.items(), rid, drop=drop)
        tried: set[str] = set()
        last: _Abandoned | None = None
        # What `pick` chose, for the attempt it is granted for, with the states it chose among
        # and whether the model is served disaggregated.
        decided: list[tuple[Decision, list[BackendState], bool]] = []
        for _ in range(self.config.max_attempts):
            decided.clear()

            def pick(saturated: frozenset[str]) -> str | None:
                # Runs now, or later when a slot frees: re-read the set each time.
                now = time.monotonic()
                states = self._states(model, saturated, now)
                # Decode first: prefill engines never answer the client themselves.
                main, split = answering_states(states, model)
                found = candidates(main, model, tried)  # read as it is now: no copy
                available = found.available or (() if found.saturated else found.ejected)  # fail open
                if not available:
                    if found.saturated:
                        return None  # wait for a slot
                    held = availability(self.endpoints(), model, self._declared) is Availability.HELD
                    if held and not self._stopping:
                        return None  # wait for the model's first endpoint
                    raise _NothingLeft()
                if split:  # a prompt prefilled where it decodes stalls the fewest sequences
                    tokens, backlogs = summary.prompt_tokens, self._prefills.backlogs
                    pd = self.config.pd
                    available = decode_candidates(
                        available, tokens, states, model, pd, backlogs=backlogs, now=now
                    )
                decision = policy.choose(routing, available, now)
                if decision is None:
                    raise _NothingLeft()
                decided.append((decision, states, split))
                chosen: str = decision.endpoint.name
                return chosen

            try:
                name = await self.admission.acquire(model, priority, queue_timeout, pick)
            except _NothingLeft:
                break
            except Rejection as rejection:
                tally.error = _rejection_kind(rejection)
                return rejection.response()
            try:
                decision, states, split = decided[-1]
                ep = decision.endpoint
                now = time.monotonic()
                self.policies.record(routing, ep, now)
                self.detector.record_attempt(ep.name, now)
                self.metrics.counter(self.metrics.decisions, decision.policy, decision.reason).inc()
                tried.add(ep.name)
                tally.endpoint = ep.name
                tally.attempts += 1
                if split:
                    result = await self._disaggregated(
                        request, decision, states, summary, policy, body, headers, tally, started
                    )
                else:
                    result = await self._attempt(request, ep, body, headers, rid, tally, started)
            finally:
                self.admission.release(name)
            if not isinstance(result, _Abandoned):
                return result
            tally.endpoint = NO_ENDPOINT
            last = result
            self.metrics.retries.labels(ep.name, result.reason).inc()

        if last is not None and last.reason != "upstream_503":
            msg = f"Could not reach an endpoint serving `{model}` (tried {len(tried)})."
            tally.error = "upstream_unreachable"
            return error_response(502, msg)
        self.metrics.no_endpoint.labels(model).inc()
        tally.error = "no_endpoint"
        return _error(no_endpoint(model, self.config.retry_after_s))

    async def _disaggregated(
        self,
        request: ClientRequest,
        decision: Decision,
        states: list[BackendState],
        summary: Summary,
        policy: Policy,
        body: bytes,
        headers: list[tuple[str, str]],
        tally: _Tally,
        started: float,
    ) -> ClientReply | _Abandoned:
        """One attempt at a request for a disaggregated model, `decision` being its decode (or
        aggregated) endpoint: prefill first when the plan says so, else decode-only."""
        ep = decision.endpoint
        model = tally.model
        leg = _Leg(request, ep, body, headers, tally, started)
        if ep.pd_role != "decode":
            return await self._served(leg, body, "aggregated")
        if request.path == "/v1/embeddings":  # nothing to decode: the decode engine answers it
            return await self._served(leg, body, "decode_only")
        kept = tally.prefilled
        if kept is not None and pairable(ep, kept[0]):
            # A retry after a decode engine failed before answering: prefill's KV is still leased.
            client = self._client_body(body)
            budget = self.config.pd.prefill_timeout_s  # not used: its prefill is done
            prefilled = _Pair(
                request, ep, body, headers, tally, started, kept[0], client, summary.prompt_tokens, budget
            )
            return await self._vllm_decode(prefilled, kept[1])
        now = time.monotonic()
        backlogs, cached = self._prefills.backlogs, decision.prefix_match
        plan = plan_prefill(
            ep, cached, summary.prompt_tokens, states, model, self.config.pd, backlogs=backlogs, now=now
        )
        chosen = policy.choose(summary.routing, plan.candidates, now)
        if chosen is None:
            if plan.skip is not None:
                self.metrics.pd_prefill_skipped.labels(plan.skip).inc()
            return await self._served(leg, body, "decode_only")
        prefill = chosen.endpoint
        self.policies.record(summary.routing, prefill, now)
        self.detector.record_attempt(prefill.name, now)
        client = self._client_body(body)
        budget = self.config.pd.prefill_timeout_s + plan.expected_s
        tokens = summary.prompt_tokens
        pair = _Pair(request, ep, body, headers, tally, started, prefill, client, tokens, budget)
        return await (self._vllm_flow(pair) if ep.pd_protocol == "vllm" else self._sglang_flow(pair))

    async def _vllm_flow(self, pair: _Pair) -> ClientReply | _Abandoned:
        """Sequential: prefill's answer says where its KV blocks are; decode pulls them."""
        assert self._upstreams is not None
        prefill = pair.prefill
        sent = time.monotonic()
        self._enter(prefill.name)
        step = self._prefills.begin(prefill.name, pair.prompt_tokens)
        got: dict[str, Any] | FallbackReason = "prefill-unreachable"  # until answered
        try:
            got = await vllm_prefill(
                self._upstreams,
                pair.prefill.url,
                pair.request.rel_url.raw_path_qs,
                vllm_prefill_body(pair.client, pair.chat),
                pair.headers,
                pair.prefill_budget_s,
            )
        finally:
            self._prefills.end(prefill.name, step, ok=not isinstance(got, str))
            self._leave(prefill.name)
        self.metrics.pd_phase.labels(pair.tally.model, "prefill").observe(time.monotonic() - sent)
        if isinstance(got, str):
            return await self._fall_back(pair, got)
        self.detector.record_success(prefill.name, time.monotonic())
        return await self._vllm_decode(pair, got)

    async def _vllm_decode(self, pair: _Pair, kv_params: dict[str, Any]) -> ClientReply | _Abandoned:
        """Decode with prefill's KV; decode-only when the decode engine cannot load it."""
        pair.tally.prefilled = (pair.prefill, kv_params)
        decoded = await self._served(
            pair, vllm_decode_body(pair.client, kv_params), "disaggregated", remote_kv=True
        )
        if isinstance(decoded, _Abandoned) and decoded.reason == "kv_load_failed":
            # Nothing reached the client: the decode engine computes the prompt itself instead.
            pair.tally.prefilled = None
            self.metrics.pd_fallbacks.labels(KV_LOAD_FAILED).inc()
            return await self._served(pair, pair.body, "decode_only")
        return decoded

    def _client_body(self, body: bytes) -> ClientBody:
        """Parsed again only when small: a large body is edited as bytes."""
        small = len(body) <= self.config.parse_in_process_max_bytes
        return ClientBody(body, decode_json(body) if small else None)

    async def _sglang_flow(self, pair: _Pair) -> ClientReply | _Abandoned:
        """Concurrent: both sides at once, paired by the bootstrap room; decode's answer is relayed."""
        assert self._upstreams is not None
        prefill = pair.prefill
        room = new_bootstrap_room(self._rooms)
        prefill_body, decode_body = sglang_bodies(pair.client, prefill, room, pair.chat)
        sent = time.monotonic()
        self._enter(prefill.name)
        step = self._prefills.begin(prefill.name, pair.prompt_tokens)
        loop = asyncio.get_running_loop()
        prefilling = loop.create_task(
            sglang_prefill(
                self._upstreams,
                pair.prefill.url,
                pair.request.rel_url.raw_path_qs,
                prefill_body,
                pair.headers,
                pair.prefill_budget_s,
            )
        )

        def prefill_done(task: asyncio.Task[FallbackReason | None]) -> None:
            ok = not task.cancelled() and task.exception() is None and task.result() is None
            self._prefills.end(prefill.name, step, ok)
            self._leave(prefill.name)
            if not task.cancelled():
                self.metrics.pd_phase.labels(pair.tally.model, "prefill").observe(time.monotonic() - sent)

        prefilling.add_done_callback(prefill_done)
        answered = asyncio.Event()
        decoding = loop.create_task(self._served(pair, decode_body, "disaggregated", answered.set))
        try:
            await asyncio.wait((prefilling, decoding), return_when=asyncio.FIRST_COMPLETED)
            failed = prefilling.result() if prefilling.done() and not prefilling.cancelled() else None
            if failed is not None and not answered.is_set():
                # Decode would wait for KV that never comes, and an SGLang decode engine cannot
                # compute the prompt itself: nothing reached the client yet, so another pair may
                # take the request.
                decoding.cancel()
                await asyncio.gather(decoding, return_exceptions=True)
                self._prefill_failed(pair, failed)
                return _Abandoned("prefill_failed")
            result = await decoding
            if isinstance(result, _Abandoned) or pair.tally.error:
                prefilling.cancel()  # decode failed: prefill's KV has nowhere to go
            return result
        finally:
            # A client that hung up cancels this task: both sides are aborted.
            for task in (prefilling, decoding):
                task.cancel()
            await asyncio.gather(prefilling, decoding, return_exceptions=True)

    async def _fall_back(self, pair: _Pair, reason: FallbackReason) -> ClientReply | _Abandoned:
        """vLLM prefill failed: serve the client's own request on the decode engine, and count why."""
        logger.warning(
            "prefill %s failed (%s); serving %s decode-only", pair.prefill.name, reason, pair.tally.request_id
        )
        self._prefill_failed(pair, reason)
        self.metrics.pd_fallbacks.labels(reason).inc()
        return await self._served(pair, pair.body, "decode_only")

    def _prefill_failed(self, pair: _Pair, reason: FallbackReason) -> None:
        self.metrics.pd_prefill_failures.labels(pair.prefill.pd_protocol, reason).inc()
        if reason in ("prefill-timeout", "prefill-unreachable"):
            kind = FailureKind.TIMEOUT if reason == "prefill-timeout" else FailureKind.DISCONNECT
            self._failed(pair.prefill, kind, pair.tally)

    async def _served(
        self,
        leg: _Leg,
        body: bytes,
        mode: str,
        on_head: Callable[[], None] | None = None,
        remote_kv: bool = False,
    ) -> ClientReply | _Abandoned:
        """`_attempt` on the leg's decode endpoint with `body`: counts the mode, times decode's
        first byte and the request's true TTFT (from the router's receipt)."""
        tally = leg.tally
        model = tally.model
        sent = time.monotonic()

        def first_byte(now: float) -> None:
            self.metrics.pd_ttft.labels(model, mode).observe(now - leg.started)
            if mode != "aggregated":
                self.metrics.pd_phase.labels(model, "decode_first_byte").observe(now - sent)

        counted = False

        def count() -> None:
            # Once: when the answer is complete (a client that closes right after `[DONE]` cancels
            # this coroutine), else when an answer, whole or not, is returned.
            nonlocal counted
            if not counted:
                counted = True
                self.metrics.pd_requests.labels(model, mode).inc()

        result = await self._attempt(
            leg.request,
            leg.decode,
            body,
            leg.headers,
            tally.request_id,
            tally,
            leg.started,
            on_head,
            first_byte,
            remote_kv,
            count,
        )
        if not isinstance(result, _Abandoned):
            count()
        return result

    def _states(self, model: str, saturated: frozenset[str], now: float) -> list[BackendState]:
        """What the policies see of the endpoints serving `model` (per decision: on the request path).

        An endpoint's state is built again only when one of its inputs changed (the endpoint, its
        in-flight count, its load reading, health, capacity): the same object otherwise."""
        scraper = self._scraper
        ejected = self.detector.ejected(now)
        in_flight = self._in_flight
        memo = self._state_memo
        endpoints = self.endpoints()
        if len(memo) > 2 * len(endpoints) + 16:
            memo.clear()
        states = []
        for ep in endpoints:
            if model not in ep.models:
                continue
            name = ep.name
            flight = in_flight.get(name, 0)
            load = scraper.reading(name, now) if scraper is not None else None
            healthy = name not in ejected
            full = name in saturated
            known = memo.get(name)
            if (
                known is not None
                and known[0] is ep
                and known[1] == flight
                and known[2] is load
                and known[3] is healthy
                and known[4] is full
            ):
                states.append(known[5])
                continue
            state = BackendState(
                endpoint=ep,
                in_flight=flight,
                waiting=load.waiting if load is not None else None,
                running=load.running if load is not None else None,
                kv_cache_usage=load.kv_cache_usage if load is not None else None,
                healthy=healthy,
                at_capacity=full,
            )
            memo[name] = (ep, flight, load, healthy, full, state)
            states.append(state)
        return states

    def _failed(self, ep: Endpoint, kind: FailureKind, tally: _Tally) -> None:
        self.detector.record_failure(ep.name, kind, time.monotonic(), tally.client)

    def _health_event(self, event: HealthEvent) -> None:
        kind = event.kind.name.lower()
        self.metrics.child(self.metrics.health_events, event.endpoint, kind, event.source).inc()
        log = logger.warning if kind == "ejected" else logger.info
        log("endpoint %s %s (%s): %s", event.endpoint, kind, event.source, event.reason)

    def _scraped(self, event: ScrapeEvent) -> None:
        if event.error is not None:
            self.metrics.scrape_errors.labels(event.endpoint).inc()

    async def _attempt(
        self,
        request: ClientRequest,
        ep: Endpoint,
        body: bytes,
        headers: list[tuple[str, str]],
        rid: str,
        tally: _Tally,
        started: float,
        on_head: Callable[[], None] | None = None,
        on_first_byte: Callable[[float], None] | None = None,
        remote_kv: bool = False,
        on_complete: Callable[[], None] | None = None,
    ) -> ClientReply | _Abandoned:
        """Send the request to `ep` and relay its answer. `on_head` is called when the upstream's
        response head arrives (before anything reaches the client), `on_first_byte(now)` before
        the first body bytes are written to the client, `on_complete()` once its final payload
        was (the request's status is settled then). `remote_kv`: the body carries a prefill
        engine's `kv_transfer_params`, so a 5xx is taken for a failed KV load (a lease that
        expired, a refused pull) rather than ill health, and abandoned as `kv_load_failed`."""
        assert self._upstreams is not None
        self._enter(ep.name)
        upstream: UpstreamResponse | None = None
        try:
            try:
                upstream = await self._upstreams.request(
                    request.method,
                    ep.url,
                    # As the client encoded it: decoding would turn a %23 into a fragment, for one.
                    request.rel_url.raw_path_qs,
                    headers,
                    body,
                )
            except TimeoutError:
                self._failed(ep, FailureKind.TIMEOUT, tally)
                logger.warning("endpoint %s timed out before answering", ep.name)
                tally.error = "upstream_timeout"
                return error_response(504, f"Endpoint {ep.name} timed out.")
            except UpstreamError as exc:
                if exc.retryable:
                    logger.warning("endpoint %s failed before the first byte (%s); retrying", ep.name, exc)
                    self._failed(ep, FailureKind.CONNECT if exc.refused else FailureKind.DISCONNECT, tally)
                    return _Abandoned(exc.label)
                self._failed(ep, FailureKind.DISCONNECT, tally)
                logger.warning("endpoint %s failed: %s", ep.name, exc)
                tally.error = "upstream_error"
                return error_response(502, f"Endpoint {ep.name} failed: {exc.label}.")

            if on_head is not None:
                on_head()
            if remote_kv and upstream.status >= 500 and upstream.status != 503:
                logger.warning("endpoint %s could not use the prefilled KV (%d)", ep.name, upstream.status)
                return _Abandoned("kv_load_failed")
            if upstream.status >= 500 and upstream.status != 503:
                self._failed(ep, FailureKind.HTTP_5XX, tally)
            else:  # vLLM's 503 is "overloaded or starting", not ill health
                self.detector.record_success(ep.name, time.monotonic())
            if upstream.status == 503:
                # Nothing was sent to the client yet, so another endpoint may still take it.
                logger.warning("endpoint %s answered 503; retrying", ep.name)
                return _Abandoned("upstream_503")

            timer = RelayTimer(self.metrics, tally.model, ep.name, started)
            tap = tally.usage
            first = on_first_byte
            if tap is None and first is None:
                on_data: Callable[[bytes, bool], None] = timer
            else:

                def on_data(data: bytes, event_stream: bool) -> None:
                    nonlocal first
                    if first is not None:
                        first(time.monotonic())
                        first = None
                    timer(data, event_stream)
                    if tap is not None:
                        tap(data)

            status = upstream.status

            def complete() -> None:
                # Counted by its status even if the client closes before the relay returns.
                tally.code = status
                if on_complete is not None:
                    on_complete()

            response, outcome = await relay(request, upstream, rid, on_data, tally.response_headers, complete)
            if outcome is Outcome.NOTHING_SENT:
                self._failed(ep, FailureKind.DISCONNECT, tally)
                return _Abandoned("failed_before_body")
            if outcome is Outcome.CLIENT_GONE:
                tally.code = CLIENT_CLOSED
                logger.info("client went away during a request to %s", ep.name)
            elif outcome is Outcome.UPSTREAM_FAILED:
                self._failed(ep, FailureKind.DISCONNECT, tally)
                self.metrics.stream_failures.labels(ep.name).inc()
                tally.error = "stream_broken"
            return response
        finally:
            if upstream is not None:
                upstream.finish()  # kept for reuse only when the body was read to the end
            self._leave(ep.name)

    def _enter(self, name: str) -> None:
        count = self._in_flight.get(name, 0) + 1
        self._in_flight[name] = count
        self.metrics.gauge(self.metrics.in_flight, name).set(count)

    def _leave(self, name: str) -> None:
        count = self._in_flight.get(name, 1) - 1
        if count <= 0 and name not in self._endpoint_names:
            # Removed while busy: it leaves the report once its last request is done.
            self._in_flight.pop(name, None)
            self.metrics.forget_endpoint(name)
            return
        self._in_flight[name] = max(count, 0)
        self.metrics.gauge(self.metrics.in_flight, name).set(max(count, 0))


def _log_request(access: AccessLog, request: ClientRequest, tally: _Tally, code: int, seconds: float) -> None:
    """One JSON line per request: ids, routing and outcome; never a prompt, a key or a header value."""
    access.write(
        access_line(
            tally.request_id,
            request.method,
            request.path,
            tally.model,
            tally.endpoint,
            code,
            tally.attempts,
            round(seconds * 1000, 2),
            tally.error,
        )
    )


def _tokens_used(grant: Grant, usage: UsageTap | None, status: int | None) -> int:
    """What a request is charged to its key's token budget once it is answered (`status` None:
    it was not, the client went away)."""
    counted = usage.total_tokens if usage is not None else None
    if counted is not None:
        return counted  # the engine's own count
    if status is not None and status >= 400:
        return 0  # refused, by the router or the engine: nothing was generated
    # No count (a stream without include_usage, one cut short, a client gone): the estimate stands.
    return grant.tokens


def _routing_headers(request: ClientRequest, session_header: str) -> dict[str, str]:
    """The headers `summarize` reads, lower-cased (it may run in another process)."""
    found = {}
    for name in (session_header.lower(), POLICY_HEADER):
        value = request.headers.get(name)
        if value is not None:
            found[name] = value
    return found


def _error(err: RequestError) -> web.Response:
    return error_response(err.status, err.message, param=err.param, headers=dict(err.headers) or None)


class running:
    """`async with running(Router()) as r:` starts and always stops the router."""

    def __init__(self, router: Router, host: str = "127.0.0.1", port: int = 0) -> None:
        self._router = router
        self._host = host
        self._port = port

    async def __aenter__(self) -> Router:
        await self._router.start(self._host, self._port)
        return self._router

    async def __aexit__(self, *exc: object) -> None:
        await self._router.stop()
