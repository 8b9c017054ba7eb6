"""Where prefilling on the decode engine stops being cheaper than a prefill engine plus a KV transfer.

Starts a vLLM-flavoured prefill and decode pair of `phalanx sim` (default per-token profile, default
transfer bandwidth and KV bytes per token) and the router in this process, then for each prompt
length N sends one request through the router twice, once forced decode-only
(`min_prefill_tokens` above N) and once forced through prefill (`min_prefill_tokens` 0), while
`--streams` other requests stream from the decode engine. It reports, per N and mode, the median
true TTFT of the request and the longest gap the streaming requests saw while it ran (the stall
the decode engine's batch pays for a prefill it computes itself).

    .venv/bin/python bench/router/pd_threshold.py --streams 8 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
from procs import exit_on_sigterm

from phalanx.router import Endpoint
from phalanx.router.policies.pd import PdConfig
from phalanx.router.server import Router, RouterConfig, running

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def sims(tmp: Path) -> Iterator[tuple[str, str]]:
    procs = []
    urls = []
    try:
        for role in ("kv_producer", "kv_consumer"):
            port = free_port()
            config = json.dumps({"kv_connector": "NixlConnector", "kv_role": role})
            env = {
                **os.environ,
                "VLLM_NIXL_SIDE_CHANNEL_HOST": HOST,
                "VLLM_NIXL_SIDE_CHANNEL_PORT": str(free_port()),
            }
            args = [
                sys.executable, "-m", "phalanx", "sim", "--served-model-name", "tiny", "--host", HOST,
                "--port", str(port), "--join-port", str(free_port()), "--max-model-len", "16384",
                "--kv-transfer-config", config,
            ]  # fmt: skip
            log = (tmp / f"{role}.log").open("wb")
            procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env))
            urls.append(f"http://{HOST}:{port}")
        yield urls[0], urls[1]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{url}/health") as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise SystemExit(f"{url} never became healthy")


async def background(
    session: aiohttp.ClientSession, url: str, gaps: list[tuple[float, float]], stop: asyncio.Event
) -> None:
    """Stream from the decode engine until `stop`, recording (time, gap) between events."""
    body = {"model": "tiny", "prompt": " ab" * 64, "max_tokens": 5000, "stream": True, "ignore_eos": True}
    while not stop.is_set():
        async with session.post(f"{url}/v1/completions", json=body) as r:
            last = time.monotonic()
            async for line in r.content:
                if not line.startswith(b"data: "):
                    continue  # the blank line that ends each event
                now = time.monotonic()
                gaps.append((now, now - last))
                last = now
                if stop.is_set():
                    break


async def one(session: aiohttp.ClientSession, router: Router, tokens: int, salt: int) -> float:
    # A different first word each time: nothing is cached anywhere, nothing sticks by prefix.
    body = {"model": "tiny", "prompt": f" q{salt}" + " ab" * (tokens - 1), "max_tokens": 2, "stream": True}
    started = time.monotonic()
    async with session.post(f"{router.url}/v1/completions", json=body) as r:
        assert r.status == 200, await r.text()
        await r.content.readline()
        ttft = time.monotonic() - started
        await r.read()
    return ttft


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, sims(Path(tmp)) as (prefill_url, decode_url):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            for url in (prefill_url, decode_url):
                await wait_up(session, url)
            endpoints = [
                Endpoint("p0", prefill_url, "s", 0, models=("tiny",), pd_role="prefill", pd_pair_key="s"),
                Endpoint("d0", decode_url, "s", 0, models=("tiny",), pd_role="decode", pd_pair_key="s"),
            ]
            gaps: list[tuple[float, float]] = []
            stop = asyncio.Event()
            streams = [
                asyncio.create_task(background(session, decode_url, gaps, stop)) for _ in range(args.streams)
            ]
            await asyncio.sleep(1.0)
            salt = 0
            print(f"streams={args.streams} repeat={args.repeat}")
            print("tokens  mode         ttft_p50_ms  stall_p50_ms  ordinary_gap_ms")
            for tokens in args.tokens:
                for mode, threshold in (("decode-only", 10**9), ("prefill", 0)):
                    config = RouterConfig(
                        pd=PdConfig(min_prefill_tokens=threshold, max_cached_share=0),
                        scrape_interval_s=None,
                        health_check_interval_s=None,
                    )
                    ttfts, stalls = [], []
                    async with running(Router(config)) as router:
                        router.set_endpoints(endpoints)
                        for _ in range(args.repeat):
                            salt += 1
                            await asyncio.sleep(0.3)
                            start = time.monotonic()
                            ttfts.append(await one(session, router, tokens, salt))
                            end = time.monotonic()
                            during = [gap for at, gap in gaps if start <= at <= end + 0.1]
                            stalls.append(max(during, default=0.0))
                    ordinary = statistics.median(gap for _, gap in gaps[-200:]) if gaps else 0.0
                    print(
                        f"{tokens:6d}  {mode:11s}  {statistics.median(ttfts) * 1000:11.1f}"
                        f"  {statistics.median(stalls) * 1000:12.1f}  {ordinary * 1000:15.1f}"
                    )
            stop.set()
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 64, 128, 256, 512, 1024, 2048, 4096])
    exit_on_sigterm()
    asyncio.run(main(parser.parse_args()))
