"""Per-API-key usage on the router's /metrics, over real loopback sockets: requests and the
engine's token counts by key name, failed authentications as one label, and never a key itself."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.component.router.fakes import FakeUpstream, upstreams
from tests.component.router.test_admission_and_keys import key_file, post, quiet, running

pytestmark = pytest.mark.component


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("phalanx_router_key_")
    }


async def test_usage_is_counted_by_key_name(tmp_path: Path) -> None:
    keys = key_file(tmp_path, "team-a:sk-alpha-secret", "sk-unnamed-secret tpm=100000")
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
        running(quiet(api_keys=keys)) as router,
        upstreams(FakeUpstream("a")) as (a,),
    ):
        router.set_endpoints([a.endpoint()])
        for _ in range(3):
            assert (await post(http, router, headers={"Authorization": "Bearer sk-alpha-secret"}))[0] == 200
        assert (await post(http, router, headers={"Authorization": "Bearer sk-unnamed-secret"}))[0] == 200
        assert (await post(http, router, headers={"Authorization": "Bearer sk-wrong"}))[0] == 401
        assert (await post(http, router))[0] == 401
        async with http.get(f"{router.url}/metrics") as resp:
            text = await resp.text()
    assert "secret" not in text and "sk-" not in text
    found = scraped(text)
    unnamed = next(dict(labels)["key"] for name, labels in found if dict(labels)["key"].startswith("key-"))
    # The fake engine reports 1 prompt and 1 completion token per answer.
    assert found[("phalanx_router_key_requests_total", (("code_class", "2xx"), ("key", "team-a")))] == 3
    assert found[("phalanx_router_key_prompt_tokens_total", (("key", "team-a"),))] == 3
    assert found[("phalanx_router_key_completion_tokens_total", (("key", "team-a"),))] == 3
    assert found[("phalanx_router_key_requests_total", (("code_class", "2xx"), ("key", unnamed)))] == 1
    assert (
        found[("phalanx_router_key_requests_total", (("code_class", "4xx"), ("key", "_unauthenticated")))]
        == 2
    )
