"""Where `phalanx router`'s time goes per request (issue 18): py-spy under wrk over instant backends.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/router/pyspy_profile.py [--ref REF] [--stream] [--connections 16] [--out DIR]

Starts two `instant.py` backends and `phalanx router --backend ...` (its defaults: policy `auto`,
access log on; as it was at REF with --ref), the router alone on CPU 1 and everything else on
CPU 0, loads it with wrk for 12 s and samples it with `py-spy record -r 200 -d 8` from the 2nd
second. Prints the share of samples whose stack holds each part of the request path (the table in
results.md, "Capacity over instant backends") and leaves the raw stacks under --out.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from capacity import SHAPES, start_instant
from contenders import ROUTER_CPUS_ENV, Contender
from external import wrk_command
from procs import Processes

# (label, function frames: a sample counts when its stack holds any of them)
PARTS = [
    ("aiohttp client: ClientSession._request", ["ClientSession._request (aiohttp/client.py)"]),
    (
        "upstream client (Upstreams.request, PooledResponse)",
        [
            "Upstreams.request (phalanx/router/upstream_session.py)",
            "PooledResponse.readany (phalanx/router/upstream.py)",
        ],
    ),
    ("relay to the client (proxy.relay)", ["relay (phalanx/router/proxy.py)"]),
    (
        "front: parsing requests, writing answers (front.py)",
        [
            f"{name} (phalanx/router/front.py)"
            for name in ("FrontConnection.data_received", "FrontReply.write", "FrontReply.write_eof")
        ],
    ),
    ("access log (_log_request)", ["_log_request (phalanx/router/server.py)"]),
    ("admission queue and policy choice", ["Admission.acquire (phalanx/router/admission.py)"]),
    (
        "header lists (messages)",
        [
            f"{name} (phalanx/router/messages.py)"
            for name in ("upstream_request_headers", "client_response_headers", "request_id")
        ],
    ),
    ("prometheus labels()", ["MetricWrapperBase.labels (prometheus_client/metrics.py)"]),
    ("body parse for routing (summarize)", ["Parser.summarize (phalanx/router/parsepool.py)"]),
    ("body read (read_body)", ["read_body (phalanx/router/bodies.py)"]),
    (
        "outlier detector bookkeeping",
        [
            f"OutlierDetector.{name} (phalanx/router/backends/outlier.py)"
            for name in ("record_success", "record_attempt")
        ],
    ),
]
HANDLER = "Router.handle (phalanx/router/server.py)"  # under either front
_PACKAGE = re.compile(r"\((?:.*?/)?(aiohttp|phalanx|prometheus_client)/(.*?):\d+\)$")


def frames(stack: str) -> set[str]:
    """`func (package/file.py)` for each frame of a py-spy raw line's stack."""
    return {_PACKAGE.sub(r"(\1/\2)", frame) for frame in stack.split(";")}


def shares(raw: Path) -> list[tuple[str, float]]:
    samples: list[tuple[set[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples.append((frames(stack), int(count)))
    total = sum(n for _, n in samples) or 1
    out = [(label, sum(n for f, n in samples if f & set(names)) * 100 / total) for label, names in PARTS]
    outside = sum(n for f, n in samples if HANDLER not in f) * 100 / total
    return [*out, ("outside the request handler (HTTP server, client parsing, loop)", outside)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="git ref of the router to profile (default: the working tree)")
    parser.add_argument("--stream", action="store_true", help="streaming requests")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("/tmp/phalanx-router-profile"))
    args = parser.parse_args()
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        sys.exit(f"{py_spy} missing: .venv/bin/pip install py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {0})
    os.environ[ROUTER_CPUS_ENV] = "1"
    raw = args.out / "stacks.txt"
    with Processes(args.out) as procs:
        backends = start_instant(procs, 2)
        spec = f"phalanx-cli@{args.ref}" if args.ref else "phalanx-cli"
        child, url = Contender.parse(spec).start(procs, backends, "profile")
        assert child is not None
        body = SHAPES["streaming" if args.stream else "non-streaming"]
        load = subprocess.Popen(
            wrk_command(url, args.connections, 12),
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "WRK_BODY": body},
        )
        time.sleep(2)
        # The Python process: `taskset` execs it, so the group leader is the router itself.
        record = [str(py_spy), "record", "-p", str(child.process.pid), "-d", "8", "-r", "200"]
        subprocess.run([*record, "--format", "raw", "-o", str(raw)], check=True, capture_output=True)
        out, _ = load.communicate(timeout=60)
    rate = re.search(r"Requests/sec:\s+(\S+)", out)
    print(f"wrk: {rate.group(1) if rate else '?'} requests/s while sampled; raw stacks: {raw}")
    for label, share in shares(raw):
        print(f"{share:5.1f} %  {label}")


if __name__ == "__main__":
    main()
