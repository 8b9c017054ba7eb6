"""Headless Chromium driven over the Chrome DevTools protocol: the lightest real browser for tests.

Debian's `chromium` is started with a fresh profile and `--remote-debugging-port=0`; the port it
picked is read from the profile's `DevToolsActivePort`, and one page is driven over its WebSocket
(aiohttp's client): navigate, evaluate JavaScript, take a screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> tuple[str | None, str]:
    """The browser's path, or None and why not (scripts/lib/chromium.sh installs it where it can)."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found, ""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lib" / "chromium.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode == 0 and result.stdout.strip():
        return result.stdout.strip().splitlines()[-1], ""
    return None, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "chromium not found"


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive(timeout=30)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"the browser closed the DevTools connection: {message}")
            data = json.loads(message.data)
            if data.get("id") == ident:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                return data.get("result") or {}

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        """Polls `expression` in the page until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = await self.evaluate(expression)
            if last:
                return last
            await asyncio.sleep(0.2)
        text = await self.evaluate("document.body ? document.body.innerText : ''")
        raise AssertionError(f"timed out waiting for {what}; last {last!r}; page:\n{text}")

    async def screenshot(self, path: Path, width: int, height: int) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def browser(executable: str, profile: Path) -> AsyncIterator[Page]:
    profile.mkdir(parents=True, exist_ok=True)
    command = [executable, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise AssertionError(f"chromium did not open its DevTools port:\n{err[-2000:]}")
            await asyncio.sleep(0.1)
        port = active.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            async with http.ws_connect(url, max_msg_size=64 * 2**20) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                yield page
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


@contextlib.contextmanager
def sync_page(executable: str, profile: Path) -> Iterator[SyncPage]:
    """The page for a synchronous test (the `phalanx up` harness runs event loops of its own)."""
    loop = asyncio.new_event_loop()
    manager = browser(executable, profile)
    try:
        page = loop.run_until_complete(manager.__aenter__())
        try:
            yield SyncPage(loop, page)
        finally:
            loop.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        loop.close()


class SyncPage:
    def __init__(self, loop: asyncio.AbstractEventLoop, page: Page) -> None:
        self.loop = loop
        self.page = page

    def navigate(self, url: str) -> None:
        self.loop.run_until_complete(self.page.navigate(url))

    def evaluate(self, expression: str) -> Any:
        return self.loop.run_until_complete(self.page.evaluate(expression))

    def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        return self.loop.run_until_complete(self.page.wait_for(expression, what, timeout))

    def screenshot(self, path: Path, width: int, height: int) -> None:
        self.loop.run_until_complete(self.page.screenshot(path, width, height))
