"""What hostile clients cost `phalanx router`: memory, `/health` latency, and whether it stays up.

    .venv/bin/python bench/router/hostile.py [--src DIR] [--scenarios bodies,gzip,...] [-- ROUTER ARGS]

Each scenario starts a fresh `python -m phalanx router --backend URL` (from `--src`, default this
checkout's `src/`; give a `git archive` of another commit to compare) in front of a small
upstream that answers every request at once, then:

- `bodies`: 4 clients at once each send a JSON object of `--body-mb` MB (20) that is all keys,
  about 60,000 per MB (the shape that costs a JSON parser most per byte);
- `gzip`: one 1 MB gzip body that inflates to 1 GiB;
- `conns`: the router runs with an open-file limit of 256; 300 sockets connect and send nothing,
  then one real request is sent;
- `slow`: one socket sends nothing, one half a request head, one a head and half its body; how
  long until the router closes each (at most `--slow-wait` seconds are waited).

Figures: the router's peak RSS (`VmHWM`) over its RSS before, the answers, and the slowest of the
`/health` requests sent every 20 ms during the attack on a separate connection. Extra arguments
after `--` go to `phalanx router` (e.g. `-- --max-body-mib 64`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- the upstream ------------------------------------------------------------------------------


async def _upstream(port: int) -> None:
    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": "x", "object": "text_completion", "choices": []})

    app = web.Application(client_max_size=2**31)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", lambda _: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    app.router.add_post("/v1/completions", answer)
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    await asyncio.Event().wait()


# -- processes ---------------------------------------------------------------------------------


def _status(pid: int, field: str) -> int:
    """A `/proc/PID/status` figure in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _helpers_peak_kib(router: int) -> int:
    """The sum of the peak RSS of the router's helper processes (its body-parsing workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == router:
            continue
        with contextlib.suppress(OSError, IndexError, ValueError, KeyError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == router:  # pgid
                total += _status(int(entry.name), "VmHWM")
    return total


def _wait_http(url: str, timeout_s: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def _child(args: list[str], env: dict[str, str], nofile: int | None = None) -> Any:
    """A child in its own process group (its helpers die with it), its open-file limit set."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if nofile is not None:
                resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def running(src: Path, router_args: list[str], nofile: int | None = None) -> Any:
    up_port, port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(src)}
    upstream = [sys.executable, __file__, "--upstream", str(up_port)]
    router = [sys.executable, "-m", "phalanx", "router", "--host", HOST, "--port", str(port)]
    router += ["--backend", f"http://{HOST}:{up_port}", "--no-access-log", *router_args]
    with _child(upstream, env) as _, _child(router, env, nofile) as proc:
        _wait_http(f"http://{HOST}:{up_port}/health")
        _wait_http(f"http://{HOST}:{port}/v1/models")
        yield proc, f"http://{HOST}:{port}", port


# -- measurements ------------------------------------------------------------------------------


class HealthProbe:
    """`/health` every 20 ms on its own connection; the slowest answer while it ran."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst_s = 0.0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                started = time.perf_counter()
                try:
                    async with session.get(self.url + "/health", timeout=aiohttp.ClientTimeout(30)) as r:
                        await r.read()
                except (aiohttp.ClientError, TimeoutError):
                    self.failures += 1
                self.worst_s = max(self.worst_s, time.perf_counter() - started)
                await asyncio.sleep(0.02)

    async def __aenter__(self) -> HealthProbe:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.1)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def many_keys(size: int) -> bytes:
    keys = (size - 20) // 17
    return ('{"model":"m",' + ",".join(f'"k{i:012d}":1' for i in range(keys)) + "}").encode()


def gzip_bomb(inflated: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [squeeze.compress(b'{"model":"m","prompt":"')]
    block = b"a" * 2**20
    for _ in range(inflated // len(block)):
        out.append(squeeze.compress(block))
    out.append(squeeze.compress(b'"}'))
    out.append(squeeze.flush())
    return b"".join(out)


async def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + "/v1/completions", data=body, headers=headers) as resp,
        ):
            await resp.read()
            return str(resp.status)
    except aiohttp.ClientError as exc:
        return type(exc).__name__


async def _attack(
    proc: subprocess.Popen[bytes], url: str, attack: Callable[[], Coroutine[Any, Any, list[str]]]
) -> dict[str, Any]:
    before = _status(proc.pid, "VmRSS")
    started = time.perf_counter()
    async with HealthProbe(url) as probe:
        answers = await attack()
        await asyncio.sleep(0.3)
        helpers = _helpers_peak_kib(proc.pid)
    return {
        "answers": answers,
        "rss_before_mib": round(before / 1024),
        "rss_peak_mib": round(_status(proc.pid, "VmHWM") / 1024),
        "workers_peak_mib": round(helpers / 1024),
        "health_worst_ms": round(probe.worst_s * 1000),
        "health_failures": probe.failures,
        "seconds": round(time.perf_counter() - started, 2),
    }


async def bodies(src: Path, args: list[str], megabytes: float) -> dict[str, Any]:
    body = many_keys(int(megabytes * 10**6))
    with running(src, args) as (proc, url, _):

        async def attack() -> list[str]:
            headers = {"Content-Type": "application/json"}
            return list(await asyncio.gather(*(_post(url, body, headers) for _ in range(4))))

        return await _attack(proc, url, attack)


async def gzipped(src: Path, args: list[str]) -> dict[str, Any]:
    body = gzip_bomb(2**30)
    with running(src, args) as (proc, url, _):

        async def attack() -> list[str]:
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            return [await _post(url, body, headers), f"{len(body) / 2**20:.1f} MiB sent"]

        return await _attack(proc, url, attack)


async def conns(src: Path, args: list[str]) -> dict[str, Any]:
    with running(src, args, nofile=256) as (_, url, port):
        idle = []
        refused = 0
        for _ in range(300):
            try:
                _, writer = await asyncio.open_connection(HOST, port)
                idle.append(writer)
            except OSError:
                refused += 1
        await asyncio.sleep(0.5)
        try:
            body = gzip.compress(json.dumps({"model": "m", "prompt": "hi"}).encode())
            headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
            async with asyncio.timeout(10):
                real = await _post(url, body, headers)
        except TimeoutError:
            real = "no answer in 10 s"
        for writer in idle:
            writer.close()
        return {"connected": len(idle), "refused": refused, "real_request": real}


async def _closed_after(port: int, send: bytes, wait_s: float) -> str:
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.perf_counter()
    writer.write(send)
    try:
        async with asyncio.timeout(wait_s):
            while await reader.read(65536):
                pass
        return f"{time.perf_counter() - started:.1f} s"
    except TimeoutError:
        return f"still open after {wait_s:g} s"
    finally:
        writer.close()


async def slow(src: Path, args: list[str], wait_s: float) -> dict[str, Any]:
    with running(src, args) as (_, _, port):
        head = f"POST /v1/completions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        results = await asyncio.gather(
            _closed_after(port, b"", wait_s),
            _closed_after(port, head.encode(), wait_s),
            _closed_after(port, (head + "Content-Length: 100\r\n\r\n" + '{"model":').encode(), wait_s),
        )
        return dict(zip(("idle", "half_head", "half_body"), results, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the phalanx sources to run")
    parser.add_argument("--scenarios", default="bodies,gzip,conns,slow")
    parser.add_argument("--slow-wait", type=float, default=40.0)
    parser.add_argument("--body-mb", type=float, default=20.0, help="size of each body in `bodies`")
    parser.add_argument("router_args", nargs="*", help="after --: more `phalanx router` arguments")
    opts = parser.parse_args()
    if opts.upstream:
        asyncio.run(_upstream(opts.upstream))
        return
    src = opts.src.resolve()
    runs: dict[str, Callable[[], Coroutine[Any, Any, dict[str, Any]]]] = {
        "bodies": lambda: bodies(src, opts.router_args, opts.body_mb),
        "gzip": lambda: gzipped(src, opts.router_args),
        "conns": lambda: conns(src, opts.router_args),
        "slow": lambda: slow(src, opts.router_args, opts.slow_wait),
    }
    print(f"# {src} {' '.join(opts.router_args)}", flush=True)
    for name in opts.scenarios.split(","):
        print(name, json.dumps(asyncio.run(runs[name]())), flush=True)


if __name__ == "__main__":
    main()
