"""Open-loop streaming client: each request is sent at its own arrival time, whatever the others do.

Every request is a streaming `POST /v1/completions` asking for exactly its output length
(`include_usage` for the token counts). The client stamps the send, every SSE event that carries
generated text, and the end; time to first token and every inter-token gap come from those
stamps. Requests still running `drain_s` after the last arrival are cancelled and counted as
abandoned (they fail every objective).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import aiohttp
from workload import Request, prompt_text


@dataclass
class Outcome:
    request: Request
    sent_s: float = 0.0  # offset from the start of the run
    ttft_s: float | None = None
    gaps_s: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    latency_s: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.ttft_s is not None and self.latency_s is not None


async def _stream(session: aiohttp.ClientSession, url: str, body: bytes, out: Outcome) -> None:
    started = time.perf_counter()
    last: float | None = None
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            await resp.read()
            out.error = f"http_{resp.status}"
            return
        done = False
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            now = time.perf_counter()
            if b'"error"' in data or b'"usage"' in data:
                event = json.loads(data)
                if "error" in event:
                    out.error = "stream_error_event"
                    return
                if event.get("usage"):
                    out.completion_tokens = int(event["usage"].get("completion_tokens") or 0)
                if not event.get("choices"):
                    continue
            if b'"text":""' in data.replace(b" ", b""):
                continue  # an event with no generated text (none expected from completions)
            if last is None:
                out.ttft_s = now - started
            else:
                out.gaps_s.append(now - last)
            last = now
        if not done:
            out.error = "stream_without_done"
            return
    out.latency_s = time.perf_counter() - started


def _body(model: str, r: Request, run_id: str) -> bytes:
    return json.dumps(
        {
            "model": model,
            "prompt": prompt_text(r, run_id),
            "max_tokens": r.output_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
        }
    ).encode()


async def run_open_loop(
    base_url: str,
    model: str,
    requests: list[Request],
    run_id: str,
    *,
    drain_s: float,
    request_timeout_s: float = 180.0,
) -> tuple[list[Outcome], float]:
    """Sends every request at its arrival time; returns the outcomes and the wall time used."""
    # Bodies are built before the clock starts: a 32k-token prompt takes the client a while to write.
    bodies = [_body(model, r, run_id) for r in requests]
    outcomes = [Outcome(r) for r in requests]
    url = base_url + "/v1/completions"
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()

        async def one(out: Outcome, body: bytes) -> None:
            delay = out.request.arrival_s - (time.perf_counter() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            out.sent_s = time.perf_counter() - start
            try:
                await _stream(session, url, body, out)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                out.error = type(exc).__name__

        tasks = [asyncio.create_task(one(o, b)) for o, b in zip(outcomes, bodies, strict=True)]
        last_arrival = requests[-1].arrival_s if requests else 0.0
        _, pending = await asyncio.wait(tasks, timeout=last_arrival + drain_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)
        for out in outcomes:
            if out.latency_s is None and not out.error:
                out.error = "abandoned"
        elapsed = time.perf_counter() - start
    return outcomes, elapsed


async def run_sequential(base_url: str, model: str, requests: list[Request], run_id: str) -> list[Outcome]:
    """One request at a time on an otherwise idle path (the added-latency probe)."""
    outcomes = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for r in requests:
            out = Outcome(r)
            try:
                await _stream(session, base_url + "/v1/completions", _body(model, r, run_id), out)
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                out.error = type(exc).__name__
            outcomes.append(out)
    return outcomes
