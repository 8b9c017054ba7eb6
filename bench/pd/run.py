"""Prefill/decode benchmark: aggregated vs disaggregated serving on `phalanx sim`, and PD routers.

    .venv/bin/python bench/pd/run.py setup       # once: vllm-router and sglang-router venvs
    .venv/bin/python bench/pd/run.py run [--contenders ours:agg4 ours:1p3d ...] [--rates 0.5 1 ...]

Each contender gets four fresh simulators (one simulated GPU each, same latency model) and its
router; it then runs the added-latency probe and one open-loop run per rate. Writes
`results.json`, `tables.md` and every process's log under `~/.cache/phalanx/bench-pd/<time>/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1] / "router"))  # its procs.py, after ours

import simmetrics
from openloop import run_open_loop, run_sequential
from pdcontenders import MIN_PREFILL_TOKENS, SGLANG_PYTHON, VLLM_ROUTER, Contender, Unavailable
from procs import (
    HOST,
    MODEL,
    VENVS,
    Processes,
    StartError,
    exit_on_sigterm,
    free_port,
    machine_info,
    wait_serving,
)
from stats import Objectives, percentile, summarize
from tables import render, render_across
from workload import MAX_MODEL_LEN, Request, make_workload

DEFAULT_CONTENDERS = [
    "ours:agg4",
    "ours:1p3d",
    "ours:2p2d",
    "ours@256:2p2d",  # the router's default threshold: short prompts go through prefill too
    "vllm-router:2p2d",
    "sglang-router:2p2d",
]  # ours-sglang is left out: skipping prefill cannot work with SGLang decode engines (results.md)
PEER_PACKAGES = {"vllm-router-pd": "vllm-router==0.1.17", "sglang-router-pd": "sglang-router==0.3.2"}
PROBE = [Request(i, 0.0, 512, 32) for i in range(8)] + [Request(8 + i, 0.0, 8192, 32) for i in range(2)]


def setup() -> None:
    for venv, package in PEER_PACKAGES.items():
        path = VENVS / venv
        if not (path / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", package], check=True)
        print(f"{package}: {path}")
    print(f"vllm-router: {VLLM_ROUTER.exists()}, sglang-router: {SGLANG_PYTHON.exists()}")


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def wait_idle(urls: list[str], timeout_s: float = 60.0) -> None:
    """Until no simulator runs or queues a request (the previous run's drain is over)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = 0.0
        for url in urls:
            sample = simmetrics.scrape(url)
            busy += sample.get("vllm:num_requests_running", 0) + sample.get("vllm:num_requests_waiting", 0)
        if busy == 0:
            return
        time.sleep(0.5)


def probe_summary(outcomes: list[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, long in (("short", False), ("long", True)):
        ok = [o for o in outcomes if o.ok and o.request.long == long]
        out[f"{kind}_ttft_ms"] = percentile([o.ttft_s for o in ok], 0.5) * 1000
        out[f"{kind}_itl_ms"] = percentile([g for o in ok for g in o.gaps_s], 0.5) * 1000
        out[f"{kind}_errors"] = sum(1 for o in outcomes if not o.ok and o.request.long == long)
    return out


def direct_probe(procs: Processes, sim_args: list[str], run_id: str) -> dict[str, float]:
    """The probe straight to one idle aggregated simulator: what no router adds to."""
    port = free_port()
    argv = [sys.executable, "-m", "phalanx", "sim", "--served-model-name", MODEL, "--host", HOST]
    argv += ["--port", str(port), "--join-port", str(free_port()), "--max-model-len", str(MAX_MODEL_LEN)]
    child = procs.spawn("sim-direct", argv + sim_args)
    url = f"http://{HOST}:{port}"
    wait_serving(child, url)
    result = probe_summary(asyncio.run(run_sequential(url, MODEL, PROBE, run_id + "d")))
    procs.stop(child)
    return result


def run_contender(
    contender: Contender, args: argparse.Namespace, out_dir: Path, objectives: Objectives
) -> dict[str, Any]:
    record: dict[str, Any] = {"contender": contender.name, "runs": []}
    with Processes(out_dir / contender.name.replace(":", "-")) as procs:
        try:
            engines = contender.start_engines(procs, args.sim_arg)
            router, url = contender.start_router(procs, engines)
        except (Unavailable, StartError) as exc:
            record["unavailable"] = str(exc)
            print(f"  {contender.name}: not run: {exc}", flush=True)
            return record
        record["router_argv"] = " ".join(router.process.args)  # type: ignore[arg-type]
        record["engines"] = [e.__dict__ for e in engines]
        urls = [e.url for e in engines]
        if not args.no_probe:
            record["probe"] = probe_summary(asyncio.run(run_sequential(url, MODEL, PROBE, "probe")))
        for rate in args.rates:
            wait_idle(urls)
            requests = make_workload(rate, args.duration, args.seed)
            before = [simmetrics.scrape(u) for u in urls]
            router_before = simmetrics.scrape(url) if contender.router.startswith("ours") else {}
            cpu_before = {c.name: c.cpu_seconds() for c in procs.children}
            busy0, total0 = cpu_busy()
            own0 = time.process_time()
            run_id = f"{contender.name}{rate}"
            outcomes, elapsed = asyncio.run(
                run_open_loop(url, MODEL, requests, run_id.replace(":", ""), drain_s=args.drain)
            )
            own = time.process_time() - own0
            busy1, total1 = cpu_busy()
            cpu = {c.name: c.cpu_seconds() - cpu_before.get(c.name, 0.0) for c in procs.children}
            time.sleep(args.settle)  # leases of aborted requests expire; the leak gauge must be 0 after
            after = [simmetrics.scrape(u) for u in urls]
            deltas = [simmetrics.delta(b, a) for b, a in zip(before, after, strict=True)]
            router_delta = simmetrics.delta(router_before, simmetrics.scrape(url)) if router_before else {}
            summary = summarize(outcomes, args.duration, objectives)
            prefill_idx = [i for i, e in enumerate(engines) if e.role == "prefill"]
            summary.update(
                rate=rate,
                elapsed_s=elapsed,
                short_at_prefill=sum(simmetrics.short_prompts(deltas[i]) for i in prefill_idx),
                requests_at_prefill=sum(
                    simmetrics.matching(deltas[i], "vllm:request_success_total") for i in prefill_idx
                ),
                leaked_blocks=sum(simmetrics.matching(a, "leak") for a in after),
                leak_metric_names=sorted({n for a in after for n in simmetrics.names_matching(a, "leak")}),
                expired_leases=sum(simmetrics.matching(d, "expired") for d in deltas),
                kv_transfers=sum(d.get("vllm:nixl_xfer_time_seconds_count", 0.0) for d in deltas),
                kv_transfer_s=sum(d.get("vllm:nixl_xfer_time_seconds_sum", 0.0) for d in deltas),
                failed_transfers=sum(d.get("vllm:nixl_num_failed_transfers_total", 0.0) for d in deltas),
                router_prefill_skipped=simmetrics.matching(router_delta, "pd_prefill_skipped_total"),
                router_pd_fallbacks=simmetrics.matching(router_delta, "pd_fallbacks_total"),
                router_disaggregated=simmetrics.labelled(router_delta, "pd_requests_total", "disaggregated"),
                preemptions=sum(d.get("vllm:num_preemptions_total", 0.0) for d in deltas),
                machine_cpu_busy=(busy1 - busy0) / (total1 - total0) if total1 > total0 else float("nan"),
                cpu_s={"loadgen": own, **cpu},
            )
            record["runs"].append(summary)
            print(
                f"  {contender.name} rate {rate}: goodput {summary['goodput_share']:.0%} "
                f"TTFT p50 {summary['ttft_p50_ms']:.0f} ms ITL p99 {summary['itl_p99_ms']:.0f} ms "
                f"errors {summary['errors']} CPU busy {summary['machine_cpu_busy']:.0%}",
                flush=True,
            )
    return record


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install vllm-router and sglang-router into their own venvs")
    across = sub.add_parser("summarize", help="several runs' results.json side by side (median and range)")
    across.add_argument("results", nargs="+", type=Path)
    run = sub.add_parser("run", help="run the benchmark")
    run.add_argument("--contenders", nargs="+", default=DEFAULT_CONTENDERS)
    run.add_argument("--rates", nargs="+", type=float, default=[1.0, 1.5])
    run.add_argument("--duration", type=float, default=40.0, help="seconds of arrivals per rate")
    run.add_argument("--drain", type=float, default=30.0, help="seconds after the last arrival")
    run.add_argument("--settle", type=float, default=2.0, help="seconds before the after-run scrape")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--no-probe", action="store_true", help="skip the added-latency probe")
    run.add_argument("--sim-arg", action="append", default=[], help="extra flag for every simulator")
    run.add_argument("--ttft-base", type=float, default=Objectives.ttft_base_s)
    run.add_argument("--ttft-per-token", type=float, default=Objectives.ttft_per_token_s)
    run.add_argument("--itl-p99", type=float, default=Objectives.itl_p99_s)
    run.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.command == "setup":
        setup()
        return
    if args.command == "summarize":
        print(render_across([json.loads(path.read_text()) for path in args.results]))
        return
    contenders = [Contender.parse(c) for c in args.contenders]
    objectives = Objectives(args.ttft_base, args.ttft_per_token, args.itl_p99)
    out_dir = args.out or Path.home() / ".cache" / "phalanx" / "bench-pd" / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "objectives": objectives.__dict__,
        "ours_min_prefill_tokens": MIN_PREFILL_TOKENS,
        "contenders": [],
    }
    print(f"writing to {out_dir}", flush=True)
    if not args.no_probe:
        with Processes(out_dir / "direct") as procs:
            results["direct_probe"] = direct_probe(procs, args.sim_arg, "direct")
    for contender in contenders:
        print(f"{contender.name}", flush=True)
        results["contenders"].append(run_contender(contender, args, out_dir, objectives))
        (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    results["wall_s"] = time.monotonic() - started
    results["loadavg_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "tables.md").write_text(render(results))
    print(render(results))
    print(f"wall time {results['wall_s']:.0f} s; results in {out_dir}")


if __name__ == "__main__":
    main()
