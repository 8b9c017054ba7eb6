"""vLLM's HTTP surface on aiohttp: a thin layer over `protocol`, `responses` and the engine."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from phalanx.http.errors import SSE_DONE, error_response, json_errors, sse_error_event
from phalanx.sim.config import VERSION, SimConfig
from phalanx.sim.engine import ClusterFailure, Engine, EngineFailure, RequestHandle
from phalanx.sim.pdflow import PdFlows
from phalanx.sim.pdrequest import Plan, plan_request
from phalanx.sim.protocol import GenerationRequest, Limits, RequestError, decode_request
from phalanx.sim.responses import ChoiceResult, StreamEncoder, chat_response, completion_response, usage

log = logging.getLogger("phalanx.sim")


@dataclass
class ServerState:
    """Why the server would refuse work; /health is 200 only when none applies."""

    started: bool = False  # startup delay over and every worker joined
    draining: bool = False
    dead: str | None = None
    active_handlers: int = 0

    def unavailable(self) -> str | None:
        if self.dead is not None:
            return f"The engine is dead: {self.dead}"
        if self.draining:
            return "The server is shutting down."
        if not self.started:
            return "The server is not ready yet."
        return None


# Bodies up to this size are read on the event loop; larger ones on the parse thread, so one
# large prompt never holds /health (or the engine's steps) while it is decoded and tokenized.
INLINE_PARSE_BYTES = 64 * 1024

STATE_KEY = web.AppKey("state", ServerState)


_errors = json_errors(log, lambda _exc: "Internal server error.")


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.headers.get("X-Request-Id")
    if request_id:
        response.headers["X-Request-Id"] = request_id


class SimServer:
    def __init__(self, config: SimConfig, engine: Engine, state: ServerState, pd: PdFlows) -> None:
        self._config = config
        self._engine = engine
        self._state = state
        self._pd = pd
        self._limits = Limits(
            served_model_names=config.served_model_names,
            max_model_len=config.max_model_len,
            default_max_tokens=config.default_max_tokens,
        )
        self._created = int(time.time())
        # One thread: large bodies are read one at a time, which bounds their CPU and memory.
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phalanx-sim-parse")

    def app(self) -> web.Application:
        # vLLM caps no body size; the simulator caps it in line with --max-model-len (config.py).
        app = web.Application(middlewares=[_errors], client_max_size=self._config.max_body_bytes)
        app[STATE_KEY] = self._state
        app.on_cleanup.append(self._stop_parser)
        app.on_response_prepare.append(_echo_request_id)
        app.router.add_get("/health", self.health)
        if self._config.sglang is not None:
            # SGLang's probe paths, which its recipe's probes ask: /ready is 200 once the server takes
            # requests, /health_generate is /health under the name that always generates.
            app.router.add_get("/ready", self.ready)
            app.router.add_get("/health_generate", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/load", self.load)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        return app

    async def health(self, request: web.Request) -> web.Response:
        reason = self._state.unavailable()
        if reason is not None:
            return error_response(503, reason)
        return web.Response(status=200)

    async def ready(self, request: web.Request) -> web.Response:
        """SGLang's /ready: an empty 200 or 503."""
        return web.Response(status=200 if self._state.unavailable() is None else 503)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def models(self, request: web.Request) -> web.Response:
        cfg = self._config
        cards: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": self._created,
                "owned_by": "vllm",
                "root": cfg.model,
                "parent": None,
                "max_model_len": cfg.max_model_len,
                "permission": [],
            }
            for name in cfg.served_model_names
        ]
        return web.json_response({"object": "list", "data": cards})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._engine.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def load(self, request: web.Request) -> web.Response:
        return web.json_response({"server_load": self._engine.in_flight})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        reason = self._state.unavailable()
        if reason is not None:
            return error_response(503, reason)
        try:
            parsed = await self._read(request, chat=chat)
            plan = plan_request(parsed, self._config.kv_transfer, self._config.sglang)
        except RequestError as exc:
            if exc.unforeseen is not None:
                log.warning("answered 400 to a body no check saw: %s", exc.message, exc_info=exc.unforeseen)
            return error_response(exc.status, exc.message, param=exc.param)
        request_id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self._state.active_handlers += 1
        try:
            return await self._serve(request, parsed, plan, request_id)
        finally:
            self._state.active_handlers -= 1

    async def _serve(
        self, request: web.Request, parsed: GenerationRequest, plan: Plan, request_id: str
    ) -> web.StreamResponse:
        handle: RequestHandle | None = None
        prepared = None
        arrival = asyncio.get_running_loop().time()
        try:
            prepared = await self._pd.prepare(plan, parsed)
            if prepared.only_first_token:
                parsed = dataclasses.replace(parsed, max_tokens=1)
            handle = self._engine.submit(
                parsed, request_id, hold_kv=prepared.hold_kv, remote_kv=prepared.remote_kv, arrival=arrival
            )
            if parsed.stream:
                response = await self._stream(request, parsed, handle)
            else:
                response = await self._collect(parsed, handle, plan)
            await self._pd.finish(plan, prepared, handle)
            return response
        except RequestError as exc:
            return error_response(exc.status, exc.message, param=exc.param)
        except ClusterFailure as exc:
            return error_response(503, f"The engine is dead: {exc}")
        finally:
            if handle is not None:
                self._engine.release(handle)
            if prepared is not None and prepared.room is not None:
                await self._pd.finish(plan, prepared, None)  # closes the room if still open

    async def _read(self, request: web.Request, *, chat: bool) -> GenerationRequest:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self._config.max_body_bytes / 2**20
            raise RequestError(
                413,
                f"The request body is larger than this server accepts ({limit:g} MiB); send a smaller "
                "request, or raise the limit (phalanx sim --max-body-mib).",
                "body",
            ) from None
        if len(raw) <= INLINE_PARSE_BYTES:
            return decode_request(raw, chat=chat, limits=self._limits)
        read = functools.partial(decode_request, raw, chat=chat, limits=self._limits)
        return await asyncio.get_running_loop().run_in_executor(self._parser, read)

    async def _stop_parser(self, app: web.Application) -> None:
        self._parser.shutdown(wait=False, cancel_futures=True)

    async def _collect(self, req: GenerationRequest, handle: RequestHandle, plan: Plan) -> web.Response:
        choices = [ChoiceResult(index=seq.choice) for seq in handle.sequences]
        completion_tokens = 0
        async for event in handle.events():
            if isinstance(event, EngineFailure):
                return error_response(event.status, event.message)
            choice = choices[event.choice]
            choice.text += event.text
            completion_tokens += 1
            if event.finish_reason is not None:
                choice.finish_reason = event.finish_reason
                choice.stop_reason = event.stop_reason
        body = usage(self._prompt_tokens(req), completion_tokens, handle.cached_tokens(req.n))
        build = chat_response if req.chat else completion_response
        answer = build(handle.request_id, int(time.time()), req.model, choices, body)
        answer["kv_transfer_params"] = self._pd.response_params(plan, handle)
        return web.json_response(answer)

    async def _stream(
        self, request: web.Request, req: GenerationRequest, handle: RequestHandle
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        encoder = StreamEncoder(
            chat=req.chat,
            request_id=handle.request_id,
            created=int(time.time()),
            model=req.model,
            include_usage=req.include_usage,
            continuous_usage=req.continuous_usage,
        )
        prompt_tokens = self._prompt_tokens(req)
        completion_tokens = 0
        try:
            await response.prepare(request)
            initial = usage(prompt_tokens, 0, 0)
            for chunk in encoder.start([seq.choice for seq in handle.sequences], initial):
                await response.write(chunk)
            async for event in handle.events():
                if isinstance(event, EngineFailure):
                    await response.write(sse_error_event(event.status, event.message))
                    await response.write(SSE_DONE)
                    return response
                completion_tokens += 1
                running = usage(prompt_tokens, completion_tokens, handle.cached_tokens(req.n))
                await response.write(
                    encoder.token(event.choice, event.text, event.finish_reason, event.stop_reason, running)
                )
            final = usage(prompt_tokens, completion_tokens, handle.cached_tokens(req.n))
            for chunk in encoder.end(final):
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            log.info("client of %s went away; request aborted", handle.request_id)
        return response

    @staticmethod
    def _prompt_tokens(req: GenerationRequest) -> int:
        return sum(len(p) for p in req.prompts)
