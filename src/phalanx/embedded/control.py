"""The control endpoint of `phalanx up`: JSON over a Unix socket for `status`, `apply`, `scale`, `logs`.

`up` serves the router on the same event loop, so a spec is decoded and read in a worker thread,
one at a time: however a file is built, the router keeps answering and at most one file's worth of
memory is in use. Anything unexpected is an error message in the usual JSON shape, never aiohttp's
bare 500 page; the traceback goes to `up`'s log.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from phalanx.api.labels import FIELD_MANAGER
from phalanx.api.modelserving import ModelServing
from phalanx.api.yamlfile import MAX_FILE_BYTES
from phalanx.autoscale.conflicts import claim_of
from phalanx.controller.deployment_replicas import autoscaled, counts_to_send
from phalanx.controller.scaling import ScaleRefused, scaled
from phalanx.embedded.specs import LoadedServings, servings_from_text
from phalanx.http.errors import error_response, json_errors
from phalanx.runtimes.local.logs import BadLogRequest
from phalanx.runtimes.local.statedir import read_tail

if TYPE_CHECKING:
    from phalanx.embedded.daemon import Daemon

log = logging.getLogger("phalanx.up")

MAX_LOG_BYTES = 256 * 1024
# A spec file's text inside a JSON body: quotes and line ends are escaped, at most doubling it.
MAX_BODY_BYTES = 2 * MAX_FILE_BYTES + 64 * 1024

# Anything unexpected says what failed; the traceback goes to `up`'s log.
_errors = json_errors(
    log, lambda exc: f"phalanx up failed on this request ({type(exc).__name__}: {exc}); see its log"
)


class ControlApi:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._reading = asyncio.Lock()  # one spec read at a time

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/v1/status", self.status)
        app.router.add_post("/v1/apply", self.apply)
        app.router.add_post("/v1/scale", self.scale)
        app.router.add_get("/v1/logs", self.logs)
        app.router.add_post("/v1/down", self.down)
        return app

    @property
    def runtime(self) -> Any:
        assert self.daemon.runtime is not None
        return self.daemon.runtime

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(await self.daemon.status_payload())

    async def _json(self, request: web.Request) -> dict[str, Any]:
        data = await request.read()
        try:
            # Off the event loop: a body may be MAX_BODY_BYTES.
            body = await asyncio.to_thread(json.loads, data) if len(data) > 64 * 1024 else json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise web.HTTPBadRequest(reason="body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="body must be a JSON object")
        return body

    async def apply(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        text, source = body.get("text"), str(body.get("source") or "<apply>")
        if not isinstance(text, str):
            return error_response(400, "`text` (the YAML of the spec) is required", param="text")
        async with self._reading:
            loaded = await asyncio.to_thread(servings_from_text, text, source)
        if loaded.errors:
            return web.json_response(
                {"applied": [], "errors": loaded.errors, "warnings": loaded.warnings}, status=422
            )
        applied = []
        for compiled in loaded.servings:
            before = await self.runtime.get_serving(compiled.namespace, compiled.name)
            ms = compiled
            if before is not None and (ms.namespace, ms.name) in loaded.from_deployments:
                ms = self._deployment_counts(compiled, before, loaded)
            stored = await self.runtime.apply_serving(ms)
            if before is None:
                change = "created"
            elif (stored.metadata.generation or 0) != (before.metadata.generation or 0):
                change = "configured"
            else:
                change = "unchanged"
            applied.append({"name": ms.name, "namespace": ms.namespace, "change": change})
        assert self.daemon.autoscaler is not None
        for policy in loaded.policies:
            change = self.daemon.autoscaler.apply(policy)
            applied.append(
                {
                    "name": policy.name,
                    "namespace": policy.metadata.namespace,
                    "change": change,
                    "kind": policy.kind,
                }
            )
        return web.json_response({"applied": applied, "errors": [], "warnings": loaded.warnings})

    def _deployment_counts(
        self, ms: ModelServing, before: ModelServing, loaded: LoadedServings
    ) -> ModelServing:
        """A re-applied ModelDeployment keeps the counts an autoscaler set (the operator's rule)."""
        assert self.daemon.autoscaler is not None
        claims = [
            c
            for c in map(claim_of, [*self.daemon.autoscaler.policies(), *loaded.policies])
            if c is not None and c.namespace == ms.namespace
        ]
        roles = {role for c in claims if c.serving == ms.name for role in c.roles or ()}
        counted = counts_to_send(
            ms.to_dict(),
            before.to_dict(),
            autoscaled=autoscaled(
                loaded.from_deployments[(ms.namespace, ms.name)], [c.serving for c in claims], ms.name, None
            ),
            manager=FIELD_MANAGER,
            scaled_roles=roles,
        )
        return ModelServing.model_validate(counted)

    async def scale(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        name, namespace = body.get("name"), str(body.get("namespace") or "default")
        replicas, role_name = body.get("replicas"), body.get("role")
        if (
            not isinstance(name, str)
            or not isinstance(replicas, int)
            or isinstance(replicas, bool)
            or replicas < 0
        ):
            return error_response(
                400, "`name` and a whole number `replicas` >= 0 are required", param="replicas"
            )
        ms: ModelServing | None = await self.runtime.get_serving(namespace, name)
        if ms is None:
            known = ", ".join(s.name for s in await self.runtime.list_servings()) or "none"
            return error_response(404, f"no ModelServing {namespace}/{name} (running: {known})", param="name")
        updated = scaled(ms, replicas, role_name)
        if isinstance(updated, ScaleRefused):
            return error_response(updated.status, updated.message, param=updated.param)
        stored = await self.runtime.apply_serving(updated)
        return web.json_response({"name": stored.name, "replicas": replicas, "role": role_name})

    async def logs(self, request: web.Request) -> web.StreamResponse:
        pod = request.query.get("pod", "")
        namespace = request.query.get("namespace", "default")
        container = request.query.get("container") or None
        previous = request.query.get("previous") in ("1", "true")
        try:
            path = self.runtime.log_path(namespace, pod, container, previous=previous)
        except BadLogRequest as exc:
            return error_response(400, str(exc), param=exc.field)
        except (LookupError, ValueError) as exc:
            return error_response(404, str(exc).strip("'\""), param="pod")
        data = read_tail(path, MAX_LOG_BYTES)
        if data is None:
            what = "previous run of " if previous else ""
            return error_response(404, f"no log for the {what}pod {pod} yet", param="pod")
        return web.Response(body=data, content_type="text/plain")

    async def down(self, request: web.Request) -> web.Response:
        self.daemon.stopping.set()
        return web.json_response({"stopping": True}, status=202)
