"""The web view's HTTP side: the static page and script (package data, no build step) and the state.

`GET /ui` and `GET /ui/app.js` carry no data and need no key, so a browser can load the login
form; `GET /ui/state` is behind the API keys like the API (the script sends the key the user typed
as a Bearer header). The state comes from a provider the process wires in: `phalanx up` hands the
router its runtime's status, the Kubernetes discovery its watched pods and ModelServings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

# Plain data shaped like `phalanx status`'s payload: servings, pods, policies, events.
Snapshot = Mapping[str, Any]


@dataclass(frozen=True)
class StateProvider:
    """Where the page's servings, pods, policies and events come from; `source` names it."""

    source: str
    snapshot: Callable[[], Awaitable[Snapshot]]


_TYPES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
# The page loads only its own script and style and talks only to its own origin.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def asset(name: str) -> bytes:
    return resources.files("phalanx.router").joinpath("ui", name).read_bytes()


def asset_handler(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = asset(name)  # read once: the files are part of the package

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=_TYPES[name], headers=_HEADERS)

    return serve


def state_response(document: Mapping[str, Any]) -> web.Response:
    return web.json_response(dict(document), headers={"Cache-Control": "no-store"})
