"""Side-by-side HTTP stack measurement for the router: aiohttp vs uvicorn+starlette(+httpx).

Not part of the project's dependencies: run it from a throwaway venv.

    python -m venv /tmp/httpbench
    /tmp/httpbench/bin/pip install aiohttp uvicorn starlette httpx httptools prometheus-client
    PYTHONPATH=src /tmp/httpbench/bin/python bench/http/compare.py \
        [--duration 10] [--concurrency 32] [--rounds 3]

Cases, each server in its own process, the load generator in this one:
  json-*   a minimal POST endpoint that parses a small JSON body and answers JSON;
  sse-*    client -> proxy -> upstream; the upstream (always aiohttp, its own process) streams
           32 small SSE events, the proxy relays them chunk by chunk.
`sse-phalanx-router` runs the real `phalanx.router.Router` as the proxy when `src` is importable.
All use the stdlib asyncio loop (no uvloop) so the stacks, not the loops, are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any

EVENTS = 32
BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": True}


def sse_payload() -> list[bytes]:
    out = []
    for i in range(EVENTS):
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": f"t{i}"}}],
        }
        out.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


# -- servers (run in child processes) ---------------------------------------------------------


def serve_aiohttp_json(port: int) -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"model": body["model"], "ok": True})

    app = web.Application()
    app.router.add_post("/json", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_starlette_json(port: int, http: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def handle(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"model": body["model"], "ok": True})

    app = Starlette(routes=[Route("/json", handle, methods=["POST"])])
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="asyncio", http=http
    )


def serve_upstream(port: int) -> None:
    from aiohttp import web

    events = sse_payload()

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in events:
            await resp.write(event)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_aiohttp_proxy(port: int, upstream: str) -> None:
    import aiohttp
    from aiohttp import web

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=60),
        )
        yield
        await app["session"].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        json.loads(body)  # the router parses the body to route on `model`
        async with request.app["session"].post(
            upstream + request.path, data=body, headers={"Content-Type": "application/json"}
        ) as up:
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers["Content-Type"]})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_starlette_proxy(port: int, upstream: str, http: str) -> None:
    import httpx
    import uvicorn
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256), timeout=60.0
    )

    async def handle(request: Request) -> StreamingResponse:
        body = await request.body()
        json.loads(body)
        req = client.build_request(
            "POST", upstream + request.url.path, content=body, headers={"Content-Type": "application/json"}
        )
        up = await client.send(req, stream=True)
        return StreamingResponse(
            up.aiter_raw(),
            status_code=up.status_code,
            media_type=up.headers["Content-Type"],
            background=BackgroundTask(up.aclose),
        )

    app = Starlette(routes=[Route("/v1/chat/completions", handle, methods=["POST"])])
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="asyncio", http=http
    )


def serve_starlette_aiohttp_proxy(port: int, upstream: str) -> None:
    """Starlette server with aiohttp as the client: separates the server's cost from httpx's."""
    import aiohttp
    import uvicorn
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    state: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["session"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )
        yield
        await state["session"].close()

    async def handle(request: Request) -> StreamingResponse:
        body = await request.body()
        json.loads(body)
        up = await state["session"].post(
            upstream + request.url.path, data=body, headers={"Content-Type": "application/json"}
        )
        return StreamingResponse(
            up.content.iter_any(),
            status_code=up.status,
            media_type=up.headers["Content-Type"],
            background=BackgroundTask(up.release),
        )

    app = Starlette(routes=[Route("/v1/chat/completions", handle, methods=["POST"])], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="asyncio")


def serve_phalanx_router(port: int, upstream: str) -> None:
    from phalanx.router import Endpoint, Router

    async def main() -> None:
        router = Router()
        router.set_endpoints(
            [Endpoint(name="up", url=upstream, serving="bench", group_index=0, models=("m",))]
        )
        await router.start("127.0.0.1", port)
        try:
            await asyncio.Event().wait()
        finally:
            await router.stop(0)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


SERVERS: dict[str, Any] = {
    "aiohttp-json": lambda port, _up: serve_aiohttp_json(port),
    "starlette-json-httptools": lambda port, _up: serve_starlette_json(port, "httptools"),
    "starlette-json-h11": lambda port, _up: serve_starlette_json(port, "h11"),
    "upstream": lambda port, _up: serve_upstream(port),
    "aiohttp-proxy": serve_aiohttp_proxy,
    "starlette-httpx-proxy-httptools": lambda port, up: serve_starlette_proxy(port, up, "httptools"),
    "starlette-aiohttp-proxy-httptools": serve_starlette_aiohttp_proxy,
    "phalanx-router": serve_phalanx_router,
}


# -- load generator -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(kind: str, upstream: str = "") -> Any:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port), upstream])
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def load(
    url: str, body: bytes, concurrency: int, warmup_s: float, duration_s: float
) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    measuring = False
    stop = False

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not stop:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            if measuring:
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        await asyncio.sleep(warmup_s)
        measuring = True
        t0 = time.perf_counter()
        await asyncio.sleep(duration_s)
        measuring = False
        elapsed = time.perf_counter() - t0
        stop = True
        await asyncio.gather(*tasks)
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
        )

    return {"rps": len(latencies) / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": errors}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("aiohttp", "uvicorn", "starlette", "httpx", "httptools", "h11", "anyio"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:  # noqa: PTH123
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "UPSTREAM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, port, upstream = args.serve
        SERVERS[kind](int(port), upstream)
        return

    try:
        import phalanx.router  # noqa: F401

        have_router = True
    except ImportError:
        have_router = False

    print(f"# cpus={os.cpu_count()} cpu={cpu_model()!r} {versions()}")
    print(f"# loadavg at start: {os.getloadavg()}")
    print(
        f"# concurrency={args.concurrency} warmup={args.warmup}s duration={args.duration}s "
        f"rounds={args.rounds} (cases interleaved per round; the median round is reported)"
    )
    json_body = json.dumps({"model": "m", "prompt": "hello"}).encode()
    sse_body = json.dumps(BODY).encode()
    json_cases = ["aiohttp-json", "starlette-json-httptools", "starlette-json-h11"]
    proxies = ["aiohttp-proxy", "starlette-httpx-proxy-httptools", "starlette-aiohttp-proxy-httptools"]
    proxies += ["phalanx-router"] if have_router else []
    runs: dict[str, list[dict[str, float]]] = {}

    def measure(kind: str, url: str, body: bytes) -> None:
        r = asyncio.run(load(url, body, args.concurrency, args.warmup, args.duration))
        runs.setdefault(kind, []).append(r)
        print(f"{kind}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms", flush=True)

    for rnd in range(args.rounds):
        print(f"# round {rnd + 1}", flush=True)
        for kind in json_cases:
            with server(kind) as url:
                measure(kind, f"{url}/json", json_body)
        with server("upstream") as upstream:
            measure("direct-upstream", f"{upstream}/v1/chat/completions", sse_body)
            for kind in proxies:
                with server(kind, upstream) as url:
                    measure(kind, f"{url}/v1/chat/completions", sse_body)

    results = {kind: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for kind, rs in runs.items()}
    print()
    print("| case | req/s (median round) | req/s min-max | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        lo = min(x["rps"] for x in runs[kind])
        hi = max(x["rps"] for x in runs[kind])
        print(
            f"| {kind} | {r['rps']:.0f} | {lo:.0f}-{hi:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['errors']:.0f} |"
        )
    print()
    ratio_json = results["aiohttp-json"]["rps"] / results["starlette-json-httptools"]["rps"]
    ratio_sse = results["aiohttp-proxy"]["rps"] / results["starlette-httpx-proxy-httptools"]["rps"]
    ratio_srv = results["aiohttp-proxy"]["rps"] / results["starlette-aiohttp-proxy-httptools"]["rps"]
    print(
        f"aiohttp / starlette(httptools) req/s: json {ratio_json:.2f}x, "
        f"sse proxy vs starlette+httpx {ratio_sse:.2f}x, vs starlette+aiohttp-client {ratio_srv:.2f}x"
    )


if __name__ == "__main__":
    main()
