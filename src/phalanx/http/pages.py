"""Bounded reads of metrics pages, for the autoscalers under `phalanx up` and in the operator.

Each read has a timeout, at most `concurrency` run at once, and a page is capped in size. A page
that cannot be read (an error status, a refused or broken connection, a timeout, a page too large
or not text) is None: the caller treats it as unknown for that pass, never as 0.
"""

from __future__ import annotations

import asyncio

import aiohttp

MAX_PAGE_BYTES = 8 * 1024 * 1024  # a real engine's page is ~100 KB


class PageReader:
    def __init__(
        self, *, timeout: float = 2.0, concurrency: int = 8, max_bytes: int = MAX_PAGE_BYTES
    ) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)

    def session(self) -> aiohttp.ClientSession:
        """A session whose every request carries this reader's timeout."""
        return aiohttp.ClientSession(timeout=self.timeout)

    async def read(self, session: aiohttp.ClientSession, url: str) -> str | None:
        """The page at `url`, or None when it cannot be read whole within the timeout."""
        async with self._slots:
            try:
                async with session.get(url, timeout=self.timeout) as resp:
                    if resp.status != 200:
                        return None
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        body += chunk
                        if len(body) > self.max_bytes:
                            return None
                    return body.decode(resp.charset or "utf-8")
            except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError, LookupError):
                return None
