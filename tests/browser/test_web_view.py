"""The web view in a real headless Chromium, against a real `phalanx up` running the quickstart.

Set PHALANX_SCREENSHOT=1 to refresh docs/images/web-view-rollout.png from this run.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.cdp import ROOT, find_chromium, sync_page
from tests.component.embedded.harness import free_port, running_up
from tests.component.embedded.test_up import fast

pytestmark = pytest.mark.component

SCREENSHOT = ROOT / "docs" / "images" / "web-view-rollout.png"
# A group of the page not Ready on the newest revision, or a surge group: the rollout is under way.
ROLLING = (
    "[...document.querySelectorAll('.group h3 span')]"
    ".some(s => /Starting|Updating|Draining|Deleting|surge/.test(s.textContent))"
)
GROUP_NAMES = "[...document.querySelectorAll('[data-group]')].map(n => n.dataset.group).sort().join(',')"


@pytest.fixture(scope="module")
def chromium() -> str:
    found, why = find_chromium()
    if found is None:
        pytest.skip(f"no headless Chromium: {why}")
    return found


def test_the_page_shows_every_group_and_follows_a_scale_and_a_rollout(tmp_path: Path, chromium: str) -> None:
    with running_up(tmp_path, fast()) as up:
        up.wait_available(timeout=90)
        # `phalanx up` says where the page is, beside the API.
        assert f"web view at http://127.0.0.1:{up.port}/ui" in up.log(), up.log()[-2000:]
        with sync_page(chromium, tmp_path / "profile") as page:
            page.navigate(f"http://127.0.0.1:{up.port}/ui")
            page.wait_for(f"{GROUP_NAMES} === 'quickstart-0,quickstart-1'", "both groups")
            text = page.evaluate("document.body.innerText")
            assert "default/quickstart" in text and "sim" in text and "in flight 0" in text, text
            marker = page.evaluate("window.__loaded = Date.now()")  # gone if the page reloads
            # Drawn from the stream, never from a poll: the updates below come over /ui/events.
            assert page.evaluate("document.getElementById('view').dataset.via") == "stream"
            streamed = page.evaluate("window.phalanxUpdates.stream")

            scaled = up.phalanx("scale", "quickstart", "--replicas", "3")
            assert scaled.returncode == 0, scaled.stderr
            page.wait_for(
                f"{GROUP_NAMES} === 'quickstart-0,quickstart-1,quickstart-2'", "the third group", timeout=60
            )
            page.wait_for(
                "[...document.querySelectorAll('[data-group=\"quickstart-2\"] .pod.ok')].length === 2",
                "the third group's pods ready",
                timeout=90,
            )
            assert page.evaluate("window.__loaded") == marker  # updated in place, no reload
            updates = page.evaluate("window.phalanxUpdates")
            assert updates["poll"] == 0 and updates["stream"] > streamed, updates

            # A rollout: a new engine argument changes the revision; groups are replaced one by one.
            spec = fast()
            spec["spec"]["replicas"] = 3
            args = spec["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["args"]
            args += ["--startup-delay", "3"]
            applied = up.phalanx("apply", "-f", str(up.write_spec(spec, "rollout.yaml")))
            assert applied.returncode == 0, applied.stderr
            page.wait_for(ROLLING, "the rollout under way", timeout=60)
            shot = tmp_path / "rollout.png"
            page.screenshot(shot, 1100, 760)
            assert shot.stat().st_size > 10_000
            if os.environ.get("PHALANX_SCREENSHOT") == "1":
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, SCREENSHOT)
            assert page.evaluate("window.__loaded") == marker


def test_with_api_keys_the_page_asks_for_a_key_and_sends_it_as_a_bearer_header(
    tmp_path: Path, chromium: str
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("ops:sk-ops-123456\n")
    port = free_port()
    command = [sys.executable, "-m", "phalanx", "router", "--port", str(port), "--api-keys", str(keys)]
    command += ["--backend", f"http://127.0.0.1:{free_port()}"]  # nothing listens: shown, not routable
    log = (tmp_path / "router.log").open("wb")
    router = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        with sync_page(chromium, tmp_path / "profile") as page:
            deadline = time.monotonic() + 30
            while True:  # the router is up once its page answers
                try:
                    page.navigate(f"http://127.0.0.1:{port}/ui")
                    page.wait_for("document.getElementById('login') !== null", "the page", timeout=2)
                    break
                except AssertionError:
                    if time.monotonic() > deadline or router.poll() is not None:
                        raise
            page.wait_for("!document.getElementById('login').hidden", "the key form")
            assert "API key is needed" in page.evaluate("document.getElementById('status').textContent")
            login = (
                "document.getElementById('key').value = {key!r};"
                "document.getElementById('login').requestSubmit(); true"
            )
            page.evaluate(login.format(key="sk-wrong-00000"))
            page.wait_for("/refused/.test(document.getElementById('status').textContent)", "the refusal")
            page.evaluate(login.format(key="sk-ops-123456"))
            page.wait_for("/Other endpoints/.test(document.body.innerText)", "the state behind the key")
            assert page.evaluate("sessionStorage.getItem('phalanx-api-key')") == "sk-ops-123456"
            assert page.evaluate("document.getElementById('login').hidden") is True
            # The key rides on the stream too (a fetch with the Bearer header, not an EventSource).
            page.wait_for(
                "document.getElementById('view').dataset.via === 'stream'", "the stream behind the key"
            )
            assert page.evaluate("window.phalanxUpdates.poll") == 0
    finally:
        router.terminate()
        router.wait(20)
        log.close()


def test_the_page_polls_while_the_router_refuses_more_streams_and_takes_the_stream_once_one_frees(
    tmp_path: Path, chromium: str
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "phalanx", "router", "--port", str(port)]
    command += ["--backend", f"http://127.0.0.1:{free_port()}"]
    log = (tmp_path / "router.log").open("wb")
    router = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    held: list[http.client.HTTPConnection] = []
    try:
        deadline = time.monotonic() + 30
        while len(held) < 16:  # every stream the router allows (StreamLimits.max_streams)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/ui/events")
                resp = conn.getresponse()
            except OSError:
                conn.close()
                assert time.monotonic() < deadline and router.poll() is None, "the router did not start"
                time.sleep(0.2)
                continue
            assert resp.status == 200, resp.status
            held.append(conn)
        with sync_page(chromium, tmp_path / "profile") as page:
            page.navigate(f"http://127.0.0.1:{port}/ui")
            page.wait_for("document.getElementById('view')?.dataset.via === 'poll'", "the page polling")
            assert "live (polling)" in page.evaluate("document.getElementById('status').textContent")
            assert "Other endpoints" in page.evaluate("document.body.innerText")
            held.pop().close()  # one stream frees; the page tries the stream again within 15 s
            page.wait_for(
                "document.getElementById('view').dataset.via === 'stream'",
                "the page on the stream",
                timeout=30,
            )
            assert page.evaluate("window.phalanxUpdates.poll") >= 1
    finally:
        for conn in held:
            conn.close()
        router.terminate()
        router.wait(20)
        log.close()
