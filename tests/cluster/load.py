"""Streaming load from async `openai` clients, in a thread, for cluster tests that break things under traffic.

Each client sends one streaming completion after another. A request that fails (an error, or a stream that
ends without a finish reason) is retried after a short pause, up to `attempts` times: what a retry cures is
counted apart from what it does not.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import openai


class Truncated(Exception):
    """A stream ended without a finish reason."""


@dataclass
class Tally:
    succeeded: int = 0
    cured: int = 0  # succeeded only after a retry
    failed: int = 0  # every attempt failed
    errors: list[str] = field(default_factory=list)


class StreamingLoad:
    def __init__(
        self, url: str, model: str, *, clients: int = 2, attempts: int = 6, max_tokens: int = 32
    ) -> None:
        self.url, self.model, self.clients, self.attempts = url, model, clients, attempts
        self.max_tokens = max_tokens
        self.tally = Tally()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),))

    def __enter__(self) -> StreamingLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)

    async def _main(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))

    async def _client(self) -> None:
        async with openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=30
        ) as client:
            while not self._stop.is_set():
                await self._request(client)

    async def _request(self, client: openai.AsyncOpenAI) -> None:
        for attempt in range(self.attempts):
            try:
                await self._stream(client)
            except (openai.APIError, Truncated) as exc:
                self.tally.errors.append(f"attempt {attempt + 1}: {exc!r}")
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            self.tally.succeeded += 1
            self.tally.cured += attempt > 0
            return
        self.tally.failed += 1

    async def _stream(self, client: openai.AsyncOpenAI) -> None:
        stream = await client.completions.create(
            model=self.model, prompt="Tell me a story", max_tokens=self.max_tokens, stream=True
        )
        finished = False
        async for chunk in stream:
            finished = finished or any(choice.finish_reason for choice in chunk.choices)
        if not finished:
            raise Truncated("the stream ended without a finish reason")
