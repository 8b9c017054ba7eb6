"""Test 1, overhead: one zero-latency simulator, reached directly or through each contender.

Every contender fronts the same simulator process; rounds run every (concurrency, contender) pair,
the contender order rotating each round, so drift on a shared machine lands on all of them alike.
Added latency is a contender's percentile minus `direct`'s in the same round and concurrency.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

from contenders import Contender, Unavailable
from loadgen import run_load
from procs import MODEL, Child, Processes, start_sims

REQUEST = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
    "max_tokens": 16,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def run(
    contenders: list[Contender],
    concurrencies: list[int],
    rounds: int,
    warmup_s: float,
    duration_s: float,
    log_dir: Path,
    sim_tokenize: bool = True,
) -> dict[str, Any]:
    if not any(c.kind == "direct" for c in contenders):
        contenders = [Contender.parse("direct"), *contenders]
    points: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    with Processes(log_dir / "overhead") as procs:
        (sim,) = start_sims(procs, 1, ["--zero-latency"], tokenize=sim_tokenize)
        urls: dict[str, tuple[Child | None, str]] = {}
        for contender in contenders:
            try:
                urls[contender.spec] = contender.start(procs, [sim], "overhead")
            except Unavailable as exc:
                unavailable[contender.spec] = str(exc)
                print(f"  {contender.spec}: unavailable: {exc}", flush=True)
        live = [c.spec for c in contenders if c.spec in urls]
        for rnd in range(rounds):
            order = live[rnd % len(live) :] + live[: rnd % len(live)]
            for concurrency in concurrencies:
                for spec in order:
                    child, url = urls[spec]
                    cpu0 = child.cpu_seconds() if child else 0.0
                    result = asyncio.run(
                        run_load(
                            url,
                            lambda _n: ("/v1/chat/completions", REQUEST),
                            concurrency,
                            warmup_s,
                            duration_s,
                        )
                    )
                    cpu = (child.cpu_seconds() - cpu0) if child else 0.0
                    point = {"round": rnd + 1, "contender": spec, **result.summary()}
                    # CPU of the router's process group over warm-up + window, per request completed
                    # in the window: an estimate, the same for every contender.
                    point["router_cpu_ms_per_req"] = (
                        cpu * 1000 / (result.rps * (warmup_s + duration_s)) if child and result.rps else 0.0
                    )
                    points.append(point)
                    print(
                        f"  round {rnd + 1} c={concurrency:<3} {spec:<28} {result.rps:8.0f} req/s "
                        f"p50 {point['p50_ms']:7.2f} ms p99 {point['p99_ms']:7.2f} ms "
                        f"cpu {point['router_cpu_ms_per_req']:.3f} ms/req "
                        f"errors {sum(result.errors.values())}",
                        flush=True,
                    )
    return {"points": points, "unavailable": unavailable}


def table(points: list[dict[str, Any]]) -> str:
    direct = {(p["round"], p["concurrency"]): p for p in points if p["contender"] == "direct"}
    specs = list(dict.fromkeys(p["contender"] for p in points))
    lines = [
        "| concurrency | contender | req/s median (min–max) | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| router CPU ms/req | errors |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in sorted({p["concurrency"] for p in points}):
        for spec in specs:
            mine = [p for p in points if p["contender"] == spec and p["concurrency"] == concurrency]
            if not mine:
                continue
            rps = [p["rps"] for p in mine]
            added50 = [p["p50_ms"] - direct[(p["round"], concurrency)]["p50_ms"] for p in mine]
            added99 = [p["p99_ms"] - direct[(p["round"], concurrency)]["p99_ms"] for p in mine]
            errors = sum(sum(p["errors"].values()) + p["abandoned"] for p in mine)
            added = "—" if spec == "direct" else f"{statistics.median(added50):.2f}"
            added_99 = "—" if spec == "direct" else f"{statistics.median(added99):.2f}"
            cpu = (
                "—"
                if spec == "direct"
                else f"{statistics.median(p['router_cpu_ms_per_req'] for p in mine):.3f}"
            )
            lines.append(
                f"| {concurrency} | {spec} | {statistics.median(rps):.0f} ({min(rps):.0f}–{max(rps):.0f}) "
                f"| {statistics.median(p['p50_ms'] for p in mine):.2f} "
                f"| {statistics.median(p['p99_ms'] for p in mine):.2f} | {added} | {added_99} "
                f"| {cpu} | {errors} |"
            )
    lines += ["", *goals(points, specs, direct)]
    return "\n".join(lines)


def goals(points: list[dict[str, Any]], specs: list[str], direct: dict[Any, dict[str, Any]]) -> list[str]:
    """Ours vs each vllm-router contender: throughput ratio (goal ≥ 1.0) and added-p50 ratio (≤ 1.0)."""
    ours = [s for s in specs if s.startswith("phalanx")]
    theirs = [s for s in specs if s.startswith("vllm-router")]
    if not ours or not theirs:
        return []
    lines = [
        "| concurrency | ours / theirs | throughput ratio (goal ≥ 1.0) | added p50 ratio (goal ≤ 1.0) |",
        "|---:|---|---:|---:|",
    ]

    def med(spec: str, concurrency: int, key: str) -> float:
        mine = [p for p in points if p["contender"] == spec and p["concurrency"] == concurrency]
        if key == "added_p50":
            return statistics.median(p["p50_ms"] - direct[(p["round"], concurrency)]["p50_ms"] for p in mine)
        return statistics.median(p[key] for p in mine)

    for concurrency in sorted({p["concurrency"] for p in points}):
        for us in ours:
            for them in theirs:
                ratio = med(us, concurrency, "rps") / med(them, concurrency, "rps")
                a_us, a_them = med(us, concurrency, "added_p50"), med(them, concurrency, "added_p50")
                added = f"{a_us / a_them:.2f}" if a_them > 0 else f"n/a (theirs {a_them:.2f} ms)"
                ok_t = "✓" if ratio >= 1.0 else "✗"
                ok_a = "✓" if a_them > 0 and a_us / a_them <= 1.0 else "✗"
                lines.append(f"| {concurrency} | {us} / {them} | {ratio:.2f} {ok_t} | {added} {ok_a} |")
    return lines
