"""The web view's routes on the router: the page, its script, and the state behind the API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from phalanx.router import Endpoint, Router, RouterConfig
from phalanx.router.webui import StateProvider

SNAPSHOT = {
    "servings": [
        {
            "metadata": {"name": "<img src=x onerror=alert(1)>", "namespace": "default"},
            "spec": {"replicas": 1, "template": {"roles": [{"name": "leader"}]}},
            "status": {"groups": [{"index": 0, "name": "g0", "phase": "Ready"}]},
        }
    ],
    "pods": [
        {
            "name": "p0",
            "namespace": "default",
            "serving": "<img src=x onerror=alert(1)>",
            "role": "leader",
            "group": 0,
            "entry": True,
            "phase": "Running",
            "ready": True,
        }
    ],
}


async def snapshot() -> dict[str, Any]:
    return SNAPSHOT


def quiet(**kw: Any) -> RouterConfig:
    return RouterConfig(scrape_interval_s=None, health_check_interval_s=None, **kw)


async def test_the_page_and_script_are_served_with_a_strict_policy_and_no_key() -> None:
    router = Router(quiet())
    async with TestClient(TestServer(router.build_app())) as client:
        page = await client.get("/ui")
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        assert '<script src="/ui/app.js"' in html and "http" not in html.replace("http-equiv", "")
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        script = await client.get("/ui/app.js")
        assert script.status == 200 and script.content_type == "text/javascript"
        js = await script.text()
        assert "innerHTML" not in js and "/ui/state" in js and "/ui/events" in js and "sessionStorage" in js
        assert (await client.get("/ui/app.css")).status == 200
        assert (await client.post("/ui/state")).status == 405  # read-only


async def test_the_state_joins_the_providers_snapshot_and_the_routers_endpoints() -> None:
    router = Router(quiet())
    router.state_provider = StateProvider("up", snapshot)
    router.set_endpoints([Endpoint("default/p0", "http://127.0.0.1:9", "s", 0, models=("m",))])
    async with TestClient(TestServer(router.build_app())) as client:
        resp = await client.get("/ui/state")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
    assert body["source"] == "up"
    (ms,) = body["servings"]
    assert ms["name"] == "<img src=x onerror=alert(1)>"  # data stays data: the script never parses it
    endpoint = ms["groups"][0]["roles"][0]["pods"][0]["endpoint"]
    assert endpoint["routable"] and endpoint["inFlight"] == 0 and endpoint["kvCacheUsage"] is None
    assert body["queued"] == {"high": 0, "normal": 0, "low": 0} and body["held"] == {}


async def test_without_a_provider_the_state_lists_the_routers_endpoints_only() -> None:
    router = Router(quiet())
    router.set_endpoints([Endpoint("static/a", "http://127.0.0.1:9", "", 0, models=("m",))])
    async with TestClient(TestServer(router.build_app())) as client:
        body = await (await client.get("/ui/state")).json()
    assert body["source"] == "none" and body["servings"] == []
    assert [e["name"] for e in body["otherEndpoints"]] == ["static/a"]


async def test_with_keys_the_state_needs_a_bearer_key_and_the_page_does_not(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("team:sk-team-12345\n")
    router = Router(quiet(api_keys=keys))
    router.state_provider = StateProvider("up", snapshot)
    async with TestClient(TestServer(router.build_app())) as client:
        assert (await client.get("/ui")).status == 200
        refused = await client.get("/ui/state")
        assert refused.status == 401
        assert "servings" not in await refused.text()
        wrong = await client.get("/ui/state", headers={"Authorization": "Bearer sk-nope-00000"})
        assert wrong.status == 401
        good = await client.get("/ui/state", headers={"Authorization": "Bearer sk-team-12345"})
        assert good.status == 200 and (await good.json())["servings"][0]["groups"][0]["name"] == "g0"
