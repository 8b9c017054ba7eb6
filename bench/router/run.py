"""Router benchmarks (issue 5): overhead, routing quality, wrk, external LLM benchmark clients;
capacity over backends that answer at once (issue 18).

    .venv/bin/python bench/router/run.py all                 # everything, modest defaults (< 15 min)
    .venv/bin/python bench/router/run.py overhead|quality|wrk|clients|capacity|setup [options]

`setup` (run first by `all`; a no-op once done) makes the separate venvs under
~/.cache/phalanx/bench-venvs/ (vllm-router, and one per external client) with pip, and checks `wrk`
is on PATH; nothing goes into .venv. The first setup is slow and large: guidellm and vllm pull
torch with CUDA libraries (about 15 GB and 20 minutes together); `--clients` narrows it.

Every process it starts listens on 127.0.0.1 only, runs in its own process group and is stopped on
every exit path. Results: tables on stdout, and under --out (default
~/.cache/phalanx/bench-router/<UTC time>/) `results.json`, `tables.md` and every process's log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import capacity
import external
import overhead
import quality
from contenders import ROUTER_CPUS_ENV, Contender, vllm_router_version
from procs import exit_on_sigterm, export_src, machine_info, src_first

# `phalanx` is the router's default policy, whatever it is at the commit measured (least-in-flight
# before policies existed); `phalanx:NAME` rows are reported as not run where the router has no
# such policy.
OVERHEAD_CONTENDERS = [
    "direct",
    "phalanx",
    "phalanx:round-robin",
    "vllm-router:round_robin",
    "vllm-router:cache_aware",
]
QUALITY_CONTENDERS = [
    "phalanx",
    "phalanx:round-robin",
    "phalanx:least-in-flight",
    "phalanx:prefix-cache",
    "vllm-router:round_robin",
    "vllm-router:cache_aware",
]
WRK_CONTENDERS = ["direct", "phalanx", "vllm-router:round_robin"]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("test", choices=["all", "overhead", "quality", "wrk", "clients", "capacity", "setup"])
    top.add_argument("--out", type=Path, help="results and logs (default: a new dated directory)")
    top.add_argument(
        "--contenders",
        nargs="+",
        metavar="SPEC",
        help="router configurations (contenders.py: direct, phalanx[@REF][:POLICY], phalanx-cli[:POLICY], "
        "vllm-router:POLICY [extra args]); default per test; with `all`, every test gets this list",
    )
    top.add_argument("--skip-setup", action="store_true", help="`all`: do not run setup first")
    top.add_argument(
        "--pin",
        action="store_true",
        help="give each router CPU 1 alone (taskset); this process, the simulators, wrk and the clients "
        "share CPU 0, so a multi-threaded router cannot take CPU from the backends",
    )
    top.add_argument(
        "--git-ref",
        metavar="REF",
        help="run the router and simulators from `git archive REF src` (e.g. HEAD) instead of the "
        "working tree, so edits in progress under src/ do not leak into the figures",
    )
    top.add_argument(
        "--plain-sim",
        action="store_true",
        help="simulators without the POST /tokenize that sim_tokenize.py adds (vllm-router cache_aware "
        "then cannot tokenize through the worker)",
    )
    g = top.add_argument_group("overhead")
    g.add_argument("--concurrency", type=ints, default=[1, 8, 32, 64], help="comma-separated levels")
    g.add_argument("--rounds", type=int, default=2)
    g.add_argument("--warmup", type=float, default=1.0)
    g.add_argument("--duration", type=float, default=4.0)
    g = top.add_argument_group("quality")
    g.add_argument("--backends", type=int, default=4)
    g.add_argument("--q-concurrency", type=int, default=16)
    g.add_argument("--q-rounds", type=int, default=2)
    g.add_argument("--q-warmup", type=float, default=4.0)
    g.add_argument("--q-duration", type=float, default=16.0)
    g.add_argument("--kv-cache-tokens", type=int, default=6144, help="per simulator")
    g.add_argument("--system-prompts", type=int, default=8)
    g.add_argument("--system-tokens", type=int, default=1500)
    g.add_argument("--users", type=int, default=200)
    g.add_argument("--user-tokens", type=int, default=100)
    g.add_argument("--max-tokens", type=int, default=32)
    g.add_argument("--skew", type=float, default=0.0, help="Zipf exponent of user popularity")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--rr-reference", default="vllm-router:round_robin", help="round-robin row for the goal")
    g.add_argument("--ca-reference", default="vllm-router:cache_aware", help="cache-aware row for the goal")
    g = top.add_argument_group("wrk")
    g.add_argument("--wrk-connections", type=ints, default=[32])
    g.add_argument("--wrk-duration", type=int, default=8)
    g.add_argument("--wrk-rounds", type=int, default=2)
    g = top.add_argument_group(
        "capacity (instant backends; contenders default to direct, phalanx-cli, vllm-router)"
    )
    g.add_argument("--cap-connections", type=ints, default=[1, 16, 64])
    g.add_argument("--cap-duration", type=int, default=5, help="seconds per wrk run")
    g.add_argument("--cap-rounds", type=int, default=1)
    g.add_argument("--cap-shapes", nargs="+", default=list(capacity.SHAPES), choices=list(capacity.SHAPES))
    g = top.add_argument_group("clients")
    g.add_argument("--clients", nargs="+", default=list(external.CLIENTS), choices=list(external.CLIENTS))
    g.add_argument("--client-timeout", type=int, default=120, help="seconds per client attempt")
    return top


def use_git_ref(ref: str, directory: Path) -> str:
    """Exports src/ at `ref` and puts it first on PYTHONPATH for every child process."""
    commit = export_src(ref, directory)
    os.environ["PYTHONPATH"] = src_first(directory)
    return f"git archive {ref} ({commit}) src, via PYTHONPATH"


def main() -> None:
    args = parser().parse_args()
    exit_on_sigterm()
    out = args.out or Path.home() / ".cache/phalanx/bench-router" / time.strftime(
        "%Y%m%dT%H%M%SZ", time.gmtime()
    )
    out.mkdir(parents=True, exist_ok=True)
    tests = ["overhead", "quality", "wrk", "clients"] if args.test == "all" else [args.test]
    if args.test == "setup" or (args.test == "all" and not args.skip_setup):
        external.setup(args.clients, out / "setup")
        if args.test == "setup":
            return
    if args.pin:
        os.sched_setaffinity(0, {0})  # inherited by every child except the routers
        os.environ[ROUTER_CPUS_ENV] = "1"
    info = machine_info() | {"vllm_router": vllm_router_version(), "wrk": external.wrk_version()}
    if args.git_ref:
        info["phalanx_source"] = use_git_ref(args.git_ref, out / "src-snapshot")
    info["cpu_pinning"] = "routers on CPU 1, everything else on CPU 0" if args.pin else "none"
    report: dict[str, Any] = {"machine": info, "argv": sys.argv[1:]}
    sections = ["## Machine", "", *(f"- {k}: {v}" for k, v in info.items())]
    print("\n".join(sections), flush=True)
    started = time.monotonic()

    def contenders(default: list[str]) -> list[Contender]:
        return [Contender.parse(s) for s in (args.contenders or default)]

    try:
        for test in tests:
            print(f"\n## {test}", flush=True)
            if test == "overhead":
                result = overhead.run(
                    contenders(OVERHEAD_CONTENDERS),
                    args.concurrency,
                    args.rounds,
                    args.warmup,
                    args.duration,
                    out,
                    sim_tokenize=not args.plain_sim,
                )
                text = overhead.table(result["points"])
            elif test == "quality":
                workload = quality.Workload(
                    args.system_prompts,
                    args.system_tokens,
                    args.users,
                    args.user_tokens,
                    args.max_tokens,
                    args.skew,
                    args.seed,
                )
                result = quality.run(
                    contenders(QUALITY_CONTENDERS),
                    workload,
                    args.backends,
                    args.q_concurrency,
                    args.q_rounds,
                    args.q_warmup,
                    args.q_duration,
                    args.kv_cache_tokens,
                    out,
                    sim_tokenize=not args.plain_sim,
                )
                text = quality.table(result["rows"], args.rr_reference, args.ca_reference)
            elif test == "wrk":
                result = external.run_wrk(
                    contenders(WRK_CONTENDERS),
                    args.wrk_connections,
                    args.wrk_duration,
                    args.wrk_rounds,
                    out,
                    sim_tokenize=not args.plain_sim,
                )
                text = external.wrk_table(result["rows"])
            elif test == "capacity":
                result = capacity.run(
                    contenders(capacity.CAPACITY_CONTENDERS),
                    args.cap_connections,
                    args.cap_duration,
                    args.cap_rounds,
                    out,
                    args.cap_shapes,
                )
                text = capacity.table(result["rows"])
            else:
                result = external.run_clients(args.clients, args.client_timeout, out)
                text = external.clients_table(result["rows"])
            for spec, why in result.get("unavailable", {}).items():
                text += f"\n\n`{spec}` did not run: {why}"
            report[test] = result
            sections += ["", f"## {test}", "", text]
            print("\n" + text, flush=True)
    finally:
        report["wall_s"] = time.monotonic() - started
        report["loadavg_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        sections += [
            "",
            f"Wall time {report['wall_s']:.0f} s; load average at end {report['loadavg_at_end']}.",
        ]
        (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "tables.md").write_text("\n".join(sections) + "\n")
        print(f"\nWall time {report['wall_s']:.0f} s. Results and logs: {out}", flush=True)


if __name__ == "__main__":
    main()
