"""Test 5, capacity (issue 18): each router over two backends that answer at once (`instant.py`).

The backends are never the bottleneck, so what is measured is the router's own cost per request:
`wrk` POSTs to /v1/completions, non-streaming and streaming, at each connection count, through
every contender in the same run (the order rotating each round). CPU per request is the user +
system time of the contender's whole process group (parse workers included) over the wrk window,
divided by the requests wrk completed.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from contenders import Contender, Unavailable
from external import wrk_command, wrk_once
from procs import HOST, MODEL, ROOT, Child, Processes, free_port, wait_serving

# `phalanx-cli` is how `phalanx router` runs: default policy, access log on.
CAPACITY_CONTENDERS = ["direct", "phalanx-cli", "vllm-router:round_robin"]
SHAPES = {
    "non-streaming": f'{{"model": "{MODEL}", "prompt": "Say hello to the benchmark.", "max_tokens": 4}}',
    "streaming": f'{{"model": "{MODEL}", "prompt": "Say hello to the benchmark.", "max_tokens": 4, '
    '"stream": true}',
}


def start_instant(procs: Processes, count: int) -> list[str]:
    urls = []
    children = []
    for i in range(count):
        port = free_port()
        argv = [sys.executable, str(ROOT / "bench" / "router" / "instant.py"), "--host", HOST]
        argv += ["--port", str(port), "--model", MODEL]
        children.append((procs.spawn(f"instant-{i}", argv), f"http://{HOST}:{port}"))
    for child, url in children:
        wait_serving(child, url)
        urls.append(url)
    return urls


def run(
    contenders: list[Contender],
    connections: list[int],
    duration_s: int,
    rounds: int,
    log_dir: Path,
    shapes: list[str] | None = None,
) -> dict[str, Any]:
    if not shutil.which("wrk"):
        return {"rows": [], "unavailable": {"wrk": "not installed (apt-get install -y wrk)"}}
    rows: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    with Processes(log_dir / "capacity") as procs:
        backends = start_instant(procs, 2)
        started: dict[str, tuple[Child | None, str]] = {}
        for contender in contenders:
            try:
                started[contender.spec] = contender.start(procs, backends, "capacity")
            except Unavailable as exc:
                unavailable[contender.spec] = str(exc)
                print(f"  {contender.spec}: unavailable: {exc}", flush=True)
        specs = list(started)
        for rnd in range(rounds):
            for shape in shapes or list(SHAPES):
                for conns in connections:
                    for spec in specs[rnd % len(specs) :] + specs[: rnd % len(specs)]:
                        child, url = started[spec]
                        cpu0 = child.cpu_seconds() if child else 0.0
                        result = wrk_once(url, conns, duration_s, SHAPES[shape])
                        cpu = child.cpu_seconds() - cpu0 if child else 0.0
                        row = {"round": rnd + 1, "shape": shape, "contender": spec, "connections": conns}
                        row |= result
                        row["cpu_ms_per_req"] = cpu * 1000 / result["requests"] if result["requests"] else 0.0
                        rows.append(row)
                        print(
                            f"  round {rnd + 1} {shape:<13} c={conns:<3} {spec:<26} {row['rps']:8.0f} req/s "
                            f"p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms "
                            f"cpu {row['cpu_ms_per_req']:.3f} ms/req "
                            f"non-2xx {row['non_2xx']} {row['socket_errors']}",
                            flush=True,
                        )
    return {
        "rows": rows,
        "unavailable": unavailable,
        "command": " ".join(wrk_command("URL", 0, duration_s)).replace("-c0", "-cN"),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | connections | contender | req/s median (min–max) | p50 ms | p99 ms | router CPU ms/req "
        "| vs vllm-router req/s | non-2xx / socket errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]

    def med(shape: str, conns: int, spec: str, key: str) -> float | None:
        mine = [
            r[key] for r in rows if (r["shape"], r["connections"], r["contender"]) == (shape, conns, spec)
        ]
        return statistics.median(mine) if mine else None

    specs = list(dict.fromkeys(r["contender"] for r in rows))
    theirs = next((s for s in specs if s.startswith("vllm-router")), None)
    for shape in dict.fromkeys(r["shape"] for r in rows):
        for conns in sorted({r["connections"] for r in rows}):
            for spec in specs:
                mine = [
                    r for r in rows if (r["shape"], r["connections"], r["contender"]) == (shape, conns, spec)
                ]
                if not mine:
                    continue
                rps = [r["rps"] for r in mine]
                spread = f"{statistics.median(rps):.0f} ({min(rps):.0f}–{max(rps):.0f})"
                ref = med(shape, conns, theirs, "rps") if theirs else None
                ratio = f"{statistics.median(rps) / ref:.2f}" if ref and spec != "direct" else "—"
                cpu = "—" if spec == "direct" else f"{med(shape, conns, spec, 'cpu_ms_per_req'):.3f}"
                errs = "; ".join(f"{r['non_2xx']} {r['socket_errors']}".strip() for r in mine)
                lines.append(
                    f"| {shape} | {conns} | {spec} | {spread} "
                    f"| {med(shape, conns, spec, 'p50_ms'):.2f} | {med(shape, conns, spec, 'p99_ms'):.2f} "
                    f"| {cpu} | {ratio} | {errs} |"
                )
    return "\n".join(lines)
