"""results.json -> Markdown tables (pure): one row per contender and rate, ratios to aggregated."""

from __future__ import annotations

import math
import statistics
from typing import Any


def _f(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _ratio(value: float, base: float | None) -> str:
    if base is None or not base or math.isnan(base) or math.isnan(value):
        return "—"
    return f"{value / base:.2f}×"


def _transfers(run: dict[str, Any]) -> str:
    count = run.get("kv_transfers") or 0
    return f"{count:.0f} ({run['kv_transfer_s'] / count * 1000:.0f})" if count else "0"


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    objectives = results["objectives"]
    lines.append(
        f"Objectives: TTFT <= {objectives['ttft_base_s']:g} s + {objectives['ttft_per_token_s'] * 1000:g} ms "
        f"per prompt token; the request's own ITL p99 <= {objectives['itl_p99_s'] * 1000:g} ms.\n"
    )
    agg = {
        run["rate"]: run
        for c in results["contenders"]
        if c["contender"].endswith(":agg4")
        for run in c.get("runs", [])
    }
    lines.append(
        "| rate/s | contender | done/sent | goodput | TTFT p50 ms | TTFT p90 ms | ITL p50 ms | ITL p99 ms "
        "| ITL p99 vs agg | TTFT p50 vs agg | errors |"
    )
    lines.append("|---:|---|" + "---:|" * 9)
    rows = [(run["rate"], c["contender"], run) for c in results["contenders"] for run in c.get("runs", [])]
    rows.sort(key=lambda r: r[0])
    for rate, name, run in rows:
        base = agg.get(rate)
        lines.append(
            f"| {rate:g} | {name} | {run['completed']}/{run['requests']} | {run['goodput_share']:.0%} "
            f"| {_f(run['ttft_p50_ms'])} | {_f(run['ttft_p90_ms'])} | {_f(run['itl_p50_ms'], 1)} "
            f"| {_f(run['itl_p99_ms'])} | {_ratio(run['itl_p99_ms'], base and base['itl_p99_ms'])} "
            f"| {_ratio(run['ttft_p50_ms'], base and base['ttft_p50_ms'])} | {run['errors'] or 0} |"
        )
    lines.append(
        "\n| rate/s | contender | ITL p99.9 ms | gaps > ITL objective | at prefill | short at prefill "
        "| router skipped prefill | fallbacks | KV transfers (mean ms) | failed transfers | expired leases "
        "| leaked blocks | our CPU | machine CPU |"
    )
    lines.append("|---:|---|" + "---:|" * 12)
    for rate, name, run in rows:
        ours = name.startswith("ours")
        lines.append(
            f"| {rate:g} | {name} | {_f(run['itl_p999_ms'])} | {run['gaps_over_objective']} "
            f"| {_f(run['requests_at_prefill'])} | {_f(run['short_at_prefill'])} "
            f"| {_f(run['router_prefill_skipped']) if ours else '—'} "
            f"| {_f(run['router_pd_fallbacks']) if ours else '—'} | {_transfers(run)} "
            f"| {_f(run.get('failed_transfers'))} | {_f(run['expired_leases'])} "
            f"| {_f(run['leaked_blocks'])} | {sum(run['cpu_s'].values()) / run['elapsed_s'] / 2:.0%} "
            f"| {run['machine_cpu_busy']:.0%} |"
        )
    skipped = [c for c in results["contenders"] if "unavailable" in c]
    for c in skipped:
        lines.append(f"\nNot run: {c['contender']}: {c['unavailable'].splitlines()[0]}")
    direct = results.get("direct_probe")
    probes = [(c["contender"], c["probe"]) for c in results["contenders"] if "probe" in c]
    if direct and probes:
        lines.append(
            "\nAdded latency (idle, one request at a time, median; minus the same request sent straight "
            "to one idle aggregated simulator):\n"
        )
        lines.append("| contender | short TTFT ms | added | 8k TTFT ms | added | ITL ms | added | errors |")
        lines.append("|---|" + "---:|" * 7)
        lines.append(
            f"| direct | {_f(direct['short_ttft_ms'], 1)} | — | {_f(direct['long_ttft_ms'], 1)} | — "
            f"| {_f(direct['short_itl_ms'], 2)} | — | {direct['short_errors'] + direct['long_errors']:g} |"
        )
        for name, p in probes:
            added_short = p["short_ttft_ms"] - direct["short_ttft_ms"]
            lines.append(
                f"| {name} | {_f(p['short_ttft_ms'], 1)} | {_f(added_short, 1)} "
                f"| {_f(p['long_ttft_ms'], 1)} | {_f(p['long_ttft_ms'] - direct['long_ttft_ms'], 1)} "
                f"| {_f(p['short_itl_ms'], 2)} | {_f(p['short_itl_ms'] - direct['short_itl_ms'], 2)} "
                f"| {p['short_errors'] + p['long_errors']:g} |"
            )
    return "\n".join(lines) + "\n"


def _ratios(results: dict[str, Any]) -> dict[tuple[float, str], dict[str, float]]:
    """Per (rate, contender) of one run: goodput and the ratios to that run's aggregated figures."""
    agg = {
        run["rate"]: run
        for c in results["contenders"]
        if c["contender"].endswith(":agg4")
        for run in c.get("runs", [])
    }
    out: dict[tuple[float, str], dict[str, float]] = {}
    for c in results["contenders"]:
        for run in c.get("runs", []):
            base = agg.get(run["rate"])
            row = {"goodput": run["goodput_share"], "itl_p99_ms": run["itl_p99_ms"]}
            if base is not None and base["itl_p99_ms"] and base["ttft_p50_ms"]:
                row["itl_p99_ratio"] = run["itl_p99_ms"] / base["itl_p99_ms"]
                row["itl_p999_ratio"] = run["itl_p999_ms"] / base["itl_p999_ms"]
                row["ttft_p50_ratio"] = run["ttft_p50_ms"] / base["ttft_p50_ms"]
            out[(run["rate"], c["contender"])] = row
    return out


def _spread(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    middle = statistics.median(values)
    return f"{fmt.format(middle)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def render_across(runs: list[dict[str, Any]]) -> str:
    """Several runs (seeds) side by side: each figure's median and range over the runs, every
    ratio taken within its own run (the machine's noise differs between runs, not within one)."""
    per_run = [_ratios(r) for r in runs]
    keys = sorted({k for ratios in per_run for k in ratios})
    lines = [
        f"{len(runs)} runs (seeds {', '.join(str(r['args'].get('seed')) for r in runs)}); median "
        "(min–max) over the runs; ratios are to the aggregated contender of the same run.\n",
        "| rate/s | contender | runs | goodput | ITL p99 ms | ITL p99 vs agg | ITL p99.9 vs agg "
        "| TTFT p50 vs agg |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rate, name in keys:
        rows = [ratios[(rate, name)] for ratios in per_run if (rate, name) in ratios]

        def pick(key: str, rows: list[dict[str, float]] = rows) -> list[float]:
            return [row[key] for row in rows if key in row and not math.isnan(row[key])]

        lines.append(
            f"| {rate:g} | {name} | {len(rows)} | {_spread(pick('goodput'), '{:.0%}')} "
            f"| {_spread(pick('itl_p99_ms'), '{:.0f}')} | {_spread(pick('itl_p99_ratio'), '{:.2f}×')} "
            f"| {_spread(pick('itl_p999_ratio'), '{:.2f}×')} | {_spread(pick('ttft_p50_ratio'), '{:.2f}×')} |"
        )
    return "\n".join(lines) + "\n"
