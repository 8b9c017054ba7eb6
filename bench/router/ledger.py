"""The router's own work per request, without sockets: a ledger of where `Router.handle` spends it.

    python bench/router/ledger.py [--requests 20000] [--repeat 5] [--top 25]

Drives `Router.handle` in-process with the front's own request object (`FrontRequest` on a
connection that keeps what is written to it) for the capacity run's request (`capacity.SHAPES`,
non-streaming and streaming), and an upstream that answers at once from memory with what
`instant.py` sends. The policy is the default (`auto`), the access log on and written the way
`phalanx router` sets it up (one plain stream handler), so what is measured is the router's own
work: keys, body read and parse, admission, policy, headers, the relay's bookkeeping, metrics and
the access line. No HTTP parsing, no syscalls, no event loop wake-ups (those are in `run.py
capacity`).

Prints ns per request for the whole path (best of `--repeat` runs, no profiler), then the same
loop under cProfile grouped into stages: a stage's time is the cumulative time of its functions,
scaled so the stages of the profiled run add up to the unprofiled total (the profiler's own cost
inflates small functions, so read the stage figures as shares, not absolutes).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# `--against REF` runs this script again on REF's `src/` (exported to a temporary folder).
sys.path.insert(0, os.environ.get("LEDGER_SRC") or str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from capacity import SHAPES  # noqa: E402
from instant import MODEL, answers  # noqa: E402

from phalanx.router.endpoints import Endpoint  # noqa: E402
from phalanx.router.front import FrontRequest  # noqa: E402
from phalanx.router.server import Router, RouterConfig, access_logger  # noqa: E402

# (stage, functions whose cumulative time is the stage's), in the order a request meets them. A
# function is named as pstats does: (file's tail, function name).
STAGES: list[tuple[str, list[tuple[str, str]]]] = [
    ("request object (headers multidict)", [("ledger.py", "_request")]),
    ("request id", [("messages.py", "request_id")]),
    ("api key", [("auth.py", "authenticate")]),
    ("body read", [("bodies.py", "read_body")]),
    ("body parse (summarize)", [("parsepool.py", "summarize")]),
    (
        "priority, queue timeout, policy lookup",
        [
            ("admission.py", "parse_priority"),
            ("admission.py", "parse_queue_timeout"),
            ("registry.py", "policy"),
            ("server.py", "_routing_headers"),
        ],
    ),
    ("availability, resolve models", [("server.py", "_resolve_models"), ("balancer.py", "availability")]),
    ("upstream request headers", [("messages.py", "upstream_request_headers")]),
    ("admission + pick (states, policy)", [("admission.py", "acquire")]),
    (
        "after pick: record, detector, decisions",
        [
            ("registry.py", "record"),
            ("outlier.py", "record_attempt"),
            ("outlier.py", "record_success"),
        ],
    ),
    ("in flight enter/leave", [("server.py", "_enter"), ("server.py", "_leave")]),
    ("admission release", [("admission.py", "release")]),
    ("upstream request (memory)", [("ledger.py", "request")]),
    ("relay: reply head headers", [("messages.py", "client_response_headers")]),
    ("relay: writes to client", [("front.py", "write"), ("front.py", "write_eof")]),
    ("relay: metrics timer + usage tap", [("metrics.py", "__call__"), ("usage.py", "__call__")]),
    ("relay (whole)", [("proxy.py", "relay")]),
    ("attempt (whole)", [("server.py", "_attempt")]),
    ("metrics: child lookups", [("metrics.py", "child")]),
    ("key usage record", [("metrics.py", "record")]),
    ("access line", [("server.py", "_log_request")]),
    ("handle (whole)", [("server.py", "handle")]),
]


class _Transport:
    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Front:
    stopping = False


class _Conn:
    """What `FrontRequest`, `FrontBody` and `FrontReply` use of a front connection: writes kept."""

    def __init__(self) -> None:
        self.remote = "127.0.0.1"
        self.transport = _Transport()
        self.front = _Front()
        self.out: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.out.append(data)

    async def drain(self) -> None:
        return None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Answer:
    """An upstream answer held in memory (`upstream_session.UpstreamResponse`)."""

    origin = "memory"

    def __init__(self, raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.reason = lines[0].split(" ", 2)[2]
        self.headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
        found = {name.lower(): value for name, value in self.headers}
        self.content_type = found.get("content-type", "").split(";")[0]
        self.content_encoding = ""
        if found.get("transfer-encoding") == "chunked":
            self.headers = [(n, v) for n, v in self.headers if n.lower() != "transfer-encoding"]
            body = _unchunk(body)
        self._body = body
        self._left = b""
        self._eof = False

    def start(self) -> _Answer:
        self._left, self._eof = self._body, False
        return self

    def read_nowait(self) -> bytes:
        data, self._left = self._left, b""
        self._eof = True
        return data

    def at_eof(self) -> bool:
        return self._eof

    async def readany(self) -> bytes:
        return self.read_nowait()

    async def read(self) -> bytes:
        return self.read_nowait()

    def finish(self) -> None:
        pass


def _unchunk(body: bytes) -> bytes:
    out: list[bytes] = []
    rest = body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return b"".join(out)
        out.append(rest[:size])
        rest = rest[size + 2 :]


class _Upstreams:
    """Answers every request at once with one prepared answer (`Router._upstreams`)."""

    def __init__(self, answer: _Answer) -> None:
        self._answer = answer

    async def request(self, method: str, url: str, target: str, headers: Any, body: bytes) -> _Answer:
        return self._answer.start()


def _request(conn: _Conn, body: bytes) -> FrontRequest:
    """What the front makes of wrk's request: its headers, then the body fed whole."""
    headers = [
        ("Host", "127.0.0.1:8000"),
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/json"),
    ]
    request = FrontRequest(conn, "/v1/completions", "/v1/completions", headers, False)  # type: ignore[arg-type]
    request.content.feed(body)
    request.content.feed_eof()
    return request


def make_router() -> Router:
    router = Router(RouterConfig(access_log=True))
    endpoints = [
        Endpoint(f"instant-{i}", f"http://127.0.0.1:{8100 + i}", "bench", i, (MODEL,)) for i in (0, 1)
    ]
    router.set_endpoints(endpoints)
    # As `phalanx router` sets logging up: one plain stream handler (here to nowhere).
    sink = logging.StreamHandler(io.StringIO())
    sink.setFormatter(logging.Formatter("%(message)s"))
    access_logger.handlers[:] = [sink]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)
    router._access.open()
    return router


def _prepared(shape: str) -> tuple[bytes, _Answer]:
    body = SHAPES[shape].encode()
    name = "completion_stream" if json.loads(body).get("stream") else "completion"
    return body, _Answer(answers(MODEL, 4)[name])


async def _loop(router: Router, body: bytes, n: int) -> None:
    conn = _Conn()
    handle = router.handle
    for _ in range(n):
        reply = await handle(_request(conn, body))
        if reply.status != 200:
            raise RuntimeError(f"answered {reply.status}: {b''.join(conn.out)[-300:]!r}")
        conn.out.clear()


def run_shape(
    shape: str, requests: int, repeat: int, profile: bool = True
) -> tuple[float, pstats.Stats | None]:
    body, answer = _prepared(shape)
    router = make_router()
    router._upstreams = _Upstreams(answer)  # type: ignore[assignment]
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_loop(router, body, 2000))  # warm: memos, metric children
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter_ns()
            loop.run_until_complete(_loop(router, body, requests))
            best = min(best, (time.perf_counter_ns() - t0) / requests)
        if not profile:
            return best, None
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(_loop(router, body, requests))
        profiler.disable()
    finally:
        loop.close()
    return best, pstats.Stats(profiler)


def stage_table(stats: pstats.Stats, total_ns: float, requests: int) -> list[tuple[str, float, float]]:
    """(stage, ns per request scaled to the unprofiled total, profiled µs per request)."""
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    cumulative: dict[tuple[str, str], float] = {}
    for (file, _, name), (_, _, _, ct, _) in table.items():
        key = (Path(file).name, name)
        cumulative[key] = cumulative.get(key, 0.0) + ct
    whole = cumulative.get(("server.py", "handle"), 0.0) + cumulative.get(("ledger.py", "_request"), 0.0)
    rows = []
    for stage, functions in STAGES:
        seconds = sum(cumulative.get(f, 0.0) for f in functions)
        rows.append((stage, total_ns * seconds / whole if whole else 0.0, seconds / requests * 1e6))
    return rows


def top_functions(stats: pstats.Stats, count: int) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(count)
    return out.getvalue()


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    parser.add_argument(
        "--against",
        metavar="REF",
        help="compare with REF's src/ (a git ref): totals from --rounds alternating runs of each, "
        "then each one's stage table",
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--totals", action="store_true", help="print only the totals, as JSON")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.against:
        _compare(args.against, args.requests, args.repeat, args.rounds)
        return
    totals = {}
    for shape in SHAPES:
        total, stats = run_shape(shape, args.requests, args.repeat, profile=not args.totals)
        totals[shape] = total
        if args.totals:
            continue
        print(f"\n{shape}: {total:,.0f} ns per request through Router.handle (best of {args.repeat})")
        print("| stage | ns/request (share of the total) | profiled µs/request |")
        print("|---|---:|---:|")
        assert stats is not None
        for stage, ns, profiled in stage_table(stats, total, args.requests):
            print(f"| {stage} | {ns:,.0f} | {profiled:.2f} |")
        if args.top:
            print(top_functions(stats, args.top))
    if args.totals:
        print(json.dumps(totals))


def _compare(ref: str, requests: int, repeat: int, rounds: int) -> None:
    """Alternate runs of REF and this tree (a busy machine drifts), best total of each per shape."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        trees = {ref: str(Path(tmp) / "src"), "this tree": str(ROOT / "src")}
        base = [sys.executable, __file__, "--requests", str(requests), "--repeat", str(repeat)]
        best: dict[str, dict[str, float]] = {name: {} for name in trees}
        for _ in range(rounds):
            for name, src in trees.items():
                done = subprocess.run(
                    [*base, "--totals"],
                    env={**os.environ, "LEDGER_SRC": src},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                for shape, total in json.loads(done.stdout.splitlines()[-1]).items():
                    best[name][shape] = min(best[name].get(shape, float("inf")), total)
        print(f"best of {rounds} alternating runs x {repeat}, ns per request through Router.handle:")
        print(f"| shape | {ref} | this tree | change |")
        print("|---|---:|---:|---:|")
        for shape in SHAPES:
            before, after = best[ref][shape], best["this tree"][shape]
            print(f"| {shape} | {before:,.0f} | {after:,.0f} | {100 * (after / before - 1):+.1f} % |")
        for name, src in trees.items():
            print(f"\n{name}:", flush=True)
            subprocess.run(base, env={**os.environ, "LEDGER_SRC": src}, check=True)


if __name__ == "__main__":
    main()
