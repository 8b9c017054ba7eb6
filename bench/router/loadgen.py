"""Closed-loop HTTP load generator for OpenAI-style endpoints (aiohttp, one event loop).

`concurrency` workers each send one request, wait for the whole answer, and send the next, for
`warmup_s` (not measured) and then `duration_s` (measured); a request counts in the window it
completes in. Streaming answers are read event by event: time to first token is the first SSE event
that carries generated text (chat's empty role chunk does not count); `usage` (asked for with
`stream_options.include_usage`) gives the prompt and cached token counts. The run is bounded: after
the window, requests still in flight get `drain_s` to finish and are then cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# (path, JSON body) of request number `seq`.
RequestFactory = Callable[[int], tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Sample:
    latency_s: float
    ttft_s: float | None  # streaming only
    prompt_tokens: int
    cached_tokens: int
    tag: str  # the factory's label for the request (e.g. which system prompt), "" if none


@dataclass
class LoadResult:
    concurrency: int
    elapsed_s: float
    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0  # still in flight when the drain bound ran out

    @property
    def rps(self) -> float:
        return len(self.samples) / self.elapsed_s if self.elapsed_s else 0.0

    def latency_ms(self, q: float) -> float:
        return percentile([s.latency_s for s in self.samples], q) * 1000

    def ttft_ms(self, q: float) -> float:
        return percentile([s.ttft_s for s in self.samples if s.ttft_s is not None], q) * 1000

    def cached_fraction(self) -> float:
        prompt = sum(s.prompt_tokens for s in self.samples)
        return sum(s.cached_tokens for s in self.samples) / prompt if prompt else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "completed": len(self.samples),
            "rps": self.rps,
            "p50_ms": self.latency_ms(0.50),
            "p90_ms": self.latency_ms(0.90),
            "p99_ms": self.latency_ms(0.99),
            "ttft_p50_ms": self.ttft_ms(0.50),
            "ttft_p90_ms": self.ttft_ms(0.90),
            "ttft_p99_ms": self.ttft_ms(0.99),
            "cached_fraction": self.cached_fraction(),
            "errors": dict(self.errors),
            "abandoned": self.abandoned,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _generated_text(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or choice.get("text"):
            return True
    return False


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, stream: bool
) -> tuple[float | None, int, int]:
    """Sends one request; returns (ttft, prompt tokens, cached tokens) or raises `_Failed`."""
    started = time.perf_counter()
    ttft: float | None = None
    usage: dict[str, Any] | None = None
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            await resp.read()
            raise _Failed(f"http_{resp.status}")
        if not stream:
            usage = (await resp.json(content_type=None)).get("usage")
        else:
            done = False
            async for data in sse_data(resp):
                if data == b"[DONE]":
                    done = True
                    break
                # Parse only what is needed: events up to the first token, and the usage event.
                if ttft is None or b'"usage"' in data or b'"error"' in data:
                    event = json.loads(data)
                    if "error" in event:
                        raise _Failed("stream_error_event")
                    if ttft is None and _generated_text(event):
                        ttft = time.perf_counter() - started
                    if event.get("usage"):
                        usage = event["usage"]
            if not done:
                raise _Failed("stream_without_done")
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    return ttft, int(usage.get("prompt_tokens") or 0), int(details.get("cached_tokens") or 0)


async def sse_data(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The payload of each `data:` line of a server-sent event stream, `[DONE]` included."""
    async for raw in resp.content:
        line = raw.strip()
        if line.startswith(b"data:"):
            yield line[5:].strip()


class _Failed(Exception):
    pass


async def run_load(
    base_url: str,
    factory: RequestFactory,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    *,
    drain_s: float = 10.0,
    request_timeout_s: float = 60.0,
    tags: Callable[[int], str] | None = None,
    on_window: Callable[[str], None] | None = None,
) -> LoadResult:
    """`on_window("start")` and `on_window("end")` run in a thread at the window's edges."""
    result = LoadResult(concurrency=concurrency, elapsed_s=0.0)
    window: list[float] = [math.inf, math.inf]  # [start, end] of the measured window
    seq = 0
    stop = asyncio.Event()

    def next_request() -> tuple[int, str, bytes, bool]:
        nonlocal seq
        n, seq = seq, seq + 1
        path, body = factory(n)
        return n, base_url + path, json.dumps(body).encode(), bool(body.get("stream"))

    async def worker(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            n, url, body, stream = next_request()
            t0 = time.perf_counter()
            try:
                ttft, prompt, cached = await _one(session, url, body, stream)
                error = ""
            except _Failed as exc:
                error = str(exc)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                error = type(exc).__name__
            t1 = time.perf_counter()
            if not window[0] <= t1 <= window[1]:
                continue
            if error:
                result.errors[error] += 1
            else:
                tag = tags(n) if tags else ""
                result.samples.append(Sample(t1 - t0, ttft, prompt, cached, tag))

    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        try:
            await asyncio.sleep(warmup_s)
            if on_window:
                await asyncio.to_thread(on_window, "start")
            window[0] = time.perf_counter()
            await asyncio.sleep(duration_s)
            window[1] = time.perf_counter()
            result.elapsed_s = window[1] - window[0]
            stop.set()
            if on_window:
                await asyncio.to_thread(on_window, "end")
            _, pending = await asyncio.wait(tasks, timeout=drain_s)
            result.abandoned = len(pending)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
    return result
