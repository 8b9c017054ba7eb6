"""A short real-process run of the autoscaler: `phalanx up` on the simulator, driven through its router.

    .venv/bin/python bench/autoscale/live.py                  # the step and zero-and-back (~4 min)
    nice -n -15 .venv/bin/python bench/autoscale/live.py --out /tmp/live.json

Starts `phalanx up` (loopback only, a temporary state dir) on `examples/autoscale-live.yaml` (or
`--spec`), sends a seeded open-loop trace of streaming completions through the router (a 1→4×
step, then idle long enough to reach zero groups, then requests again), samples the ModelServing's
replica count and ready groups every second from `up`'s status API, and reports the figures of
`README.md` ("The live run") beside the replayer's prediction for the same trace and policy.
Every process it started is stopped on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "router"))  # procs.py, loadgen.py
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "pd"))  # openloop.py, workload.py

import yaml
from openloop import Outcome, run_open_loop
from procs import HOST, Child, Processes, exit_on_sigterm, free_port, machine_info
from workload import Request

from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.autoscale.from_api import core_policy
from phalanx.autoscale.replay import metrics as replay_metrics
from phalanx.autoscale.replay.capacity import CapacityModel
from phalanx.autoscale.replay.replayer import replay
from phalanx.autoscale.replay.trace import Request as TraceRequest
from phalanx.autoscale.replay.trace import Trace
from phalanx.autoscale.types import Policy
from phalanx.embedded.client import ControlError, NotRunningError, call

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPEC = ROOT / "examples" / "autoscale-live.yaml"
MODEL = "live-model"  # what the example's simulators serve
PROMPT_TOKENS, OUTPUT_TOKENS = 64, 40
OBJECTIVE = 2.0  # seconds to first token, the policy's ttft_p95 guard
MARK = "PHALANX_AUTOSCALE_LIVE"  # set on `up`, inherited by every pod it starts: the leftovers sweep
LOGS = Path.home() / ".cache" / "phalanx" / "bench-autoscale-live"


def _bench_run() -> Any:
    """This directory's run.py (for `Ours`), under its own name: bench/pd and bench/router have a
    `run` module too, and either may come first on the path."""
    spec = importlib.util.spec_from_file_location("autoscale_bench_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is executed
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Segment:
    name: str
    seconds: float
    rate: float  # requests per second, Poisson


# The step and zero-and-back, from zero groups: 1 group's worth of load (long enough for the count
# to settle at 1 after the first group's backlog), 4× that, back (groups leave while requests
# arrive), nothing until the policy has gone to zero (its 20 s window after the last request, and
# its steps), then requests again.
FULL = (
    Segment("base", 50, 0.75),
    Segment("step", 60, 3.0),
    Segment("back", 45, 0.75),
    Segment("idle", 45, 0.0),
    Segment("from-zero", 20, 0.75),
)
# The same shape in well under a minute, for the pytest check (with a faster policy: test_live.py).
SHORT = (
    Segment("base", 4, 1.0),
    Segment("step", 12, 4.0),
    Segment("idle", 14, 0.0),
    Segment("from-zero", 4, 1.0),
)


def make_requests(segments: tuple[Segment, ...], seed: int) -> list[Request]:
    rng = random.Random(f"autoscale-live/{seed}")
    out: list[Request] = []
    start = 0.0
    for segment in segments:
        t = start
        while segment.rate > 0:
            t += rng.expovariate(segment.rate)
            if t >= start + segment.seconds:
                break
            out.append(Request(len(out), t, PROMPT_TOKENS, OUTPUT_TOKENS))
        start += segment.seconds
    return out


def segment_start(segments: tuple[Segment, ...], name: str) -> float:
    return sum(s.seconds for s in segments[: [s.name for s in segments].index(name)])


@dataclass
class Sample:
    t: float  # seconds from the trace's start
    replicas: int  # spec.replicas
    ready: int  # groups available
    pods: int


@dataclass
class Sampler:
    """Reads `up`'s status every second in a thread: the replica count, ready groups, pods."""

    state_dir: Path
    name: str
    start: float = 0.0  # time.monotonic() of the trace's start
    samples: list[Sample] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def read(self) -> dict[str, Any] | None:
        with contextlib.suppress(NotRunningError, ControlError, OSError):
            status: dict[str, Any] = call(self.state_dir, "GET", "/v1/status", timeout=5)
            return status
        return None

    def sample(self) -> None:
        status = self.read()
        if status is None:
            return
        self.last = status
        for ms in status.get("servings", []):
            if ms["metadata"]["name"] == self.name:
                self.samples.append(
                    Sample(
                        time.monotonic() - self.start,
                        int(ms["spec"].get("replicas", 1)),
                        int((ms.get("status") or {}).get("availableReplicas") or 0),
                        len(status.get("pods", [])),
                    )
                )

    def run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def marked_pids(mark: str) -> list[int]:
    """Processes whose environment carries `MARK=mark`: `up` and every pod it started."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def stop_up(procs: Processes, up: Child, mark: str) -> list[int]:
    """Ctrl-C to `up` (it stops its pods), then whatever is left by id; returns the ids it had to kill."""
    if up.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            up.process.send_signal(signal.SIGINT)
        with contextlib.suppress(Exception):
            up.process.wait(45)
    procs.stop(up)
    left = marked_pids(mark)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return left


def wait_applied(sampler: Sampler, up: Child, timeout_s: float = 60.0) -> None:
    """Until `up` shows the ModelServing and a policy with a status (its first pass is done)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if up.process.poll() is not None:
            raise RuntimeError(f"phalanx up exited with {up.process.returncode}:\n{up.tail()}")
        status = sampler.read() or {}
        names = {ms["metadata"]["name"] for ms in status.get("servings", [])}
        if sampler.name in names and any(p.get("status") for p in status.get("policies", [])):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{sampler.name} and its policy not applied after {timeout_s:.0f} s:\n{up.tail()}")


def spec_documents(spec: Path) -> tuple[str, dict[str, Any]]:
    """The ModelServing's name and the AutoscalingPolicy document of the spec file."""
    docs = [d for d in yaml.safe_load_all(spec.read_text()) if d]
    serving = next(d for d in docs if d["kind"] == "ModelServing")
    policy = next(d for d in docs if d["kind"] == "AutoscalingPolicy")
    return str(serving["metadata"]["name"]), policy


def records(status: dict[str, Any], policy: str, start_wall: float) -> list[dict[str, Any]]:
    """The policy's decision records, each with `t`: seconds from the trace's start."""
    for p in status.get("policies", []):
        if p["metadata"]["name"] == policy:
            history = ((p.get("status") or {}).get("homogeneousStatus") or {}).get("history") or []
            return [{**h, "t": datetime.fromisoformat(h["time"]).timestamp() - start_wall} for h in history]
    return []


def live_run(spec: Path, segments: tuple[Segment, ...], seed: int, log_dir: Path) -> dict[str, Any]:
    """Runs `up` on `spec`, drives the trace through it; returns every raw figure of the run."""
    name, policy_doc = spec_documents(spec)
    requests = make_requests(segments, seed)
    mark = uuid.uuid4().hex
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="phalanx-live-") as state, Processes(log_dir) as procs:
        argv = [sys.executable, "-m", "phalanx", "up", "-f", str(spec), "--host", HOST]
        argv += ["--port", str(port), "--state-dir", state, "--gpus", "0"]
        up = procs.spawn("up", argv, env={MARK: mark})
        leftovers: list[int] = []
        try:
            sampler = Sampler(Path(state), name)
            wait_applied(sampler, up)
            with sampler:
                sampler.start, start_wall = time.monotonic(), time.time()
                outcomes, elapsed = asyncio.run(
                    run_open_loop(f"http://{HOST}:{port}", MODEL, requests, mark[:8], drain_s=40.0)
                )
                sampler.sample()
            history = records(sampler.last, policy_doc["metadata"]["name"], start_wall)
        finally:
            leftovers = stop_up(procs, up, mark)
    return {
        "outcomes": outcomes,
        "samples": sampler.samples,
        "records": history,
        "elapsed_s": elapsed,
        "leftover_pids": leftovers,
    }


# -- figures -----------------------------------------------------------------------------------


def need_for(rate: float, capacity: CapacityModel) -> int:
    """Groups whose batch slots hold `rate` requests/s of the trace's requests (Little's law)."""
    seconds = capacity.prefill_seconds(PROMPT_TOKENS) + capacity.decode_seconds(OUTPUT_TOKENS)
    return math.ceil(rate * seconds / capacity.slots)


def startup_seconds(samples: list[Sample]) -> list[float]:
    """For each rise of the replica count, seconds until that many groups were ready."""
    out = []
    for before, after in itertools.pairwise(samples):
        if after.replicas > before.replicas:
            ready = next((s.t for s in samples if s.t >= after.t and s.ready >= after.replicas), None)
            if ready is not None:
                out.append(ready - after.t)
    return out


def within(outcomes: list[Outcome], start: float, end: float) -> list[Outcome]:
    return [o for o in outcomes if start <= o.request.arrival_s < end]


def share_within(outcomes: list[Outcome]) -> float | None:
    if not outcomes:
        return None
    return sum(1 for o in outcomes if o.ok and (o.ttft_s or 0.0) <= OBJECTIVE) / len(outcomes)


def from_zero(
    outcomes: list[Outcome], history: list[dict[str, Any]], start: float, end: float
) -> dict[str, Any]:
    """The requests of [start, end), which arrive at zero groups: how long until a group was asked
    for and until each got its first token, and how many were lost."""
    arrived = within(outcomes, start, end)
    decided = next((h["t"] for h in history if h["t"] >= start and h["previous"] == 0), None)
    ttfts = [o.ttft_s for o in arrived if o.ttft_s is not None]
    return {
        "at_s": start,
        "requests": len(arrived),
        "dropped": sum(1 for o in arrived if not o.ok),
        "decision_s": decided - start if decided is not None else None,
        "ttft_max_s": max(ttfts, default=None),
        "within_objective": share_within(arrived),
    }


def live_figures(
    raw: dict[str, Any], segments: tuple[Segment, ...], capacity: CapacityModel
) -> dict[str, Any]:
    outcomes: list[Outcome] = raw["outcomes"]
    samples: list[Sample] = raw["samples"]
    history: list[dict[str, Any]] = raw["records"]
    step = segment_start(segments, "step")
    back = segment_start(segments, "from-zero")
    step_rate = next(s.rate for s in segments if s.name == "step")
    need = need_for(step_rate, capacity)
    ups = [h for h in history if h["t"] >= step and h["desired"] > h["previous"]]
    ready_at = next((s.t for s in samples if s.t >= step and s.ready >= need), None)
    zero = [s for s in samples if s.replicas == 0 and step < s.t < back]
    errors = [o for o in outcomes if not o.ok]
    downs = [h for h in history if h["desired"] < h["previous"]]
    # From the first scale-down decision until the last group that left had had time to drain.
    down_span = (downs[0]["t"], downs[-1]["t"] + 30.0) if downs else (math.inf, math.inf)
    return {
        "requests": len(outcomes),
        "dropped": len(errors),
        "errors": sorted({o.error for o in errors}),
        "within_objective": share_within(outcomes),
        "step_within_objective": share_within(within(outcomes, step, step + segments[1].seconds)),
        "decision_s": ups[0]["t"] - step if ups else None,
        "need": need,
        "capacity_back_s": ready_at - step if ready_at is not None else None,
        "peak_units": max((s.replicas for s in samples), default=0),
        "actions": sum(1 for h in history if h["desired"] != h["previous"]),
        "scale_downs": len(downs),
        "requests_during_scale_down": len(within(outcomes, *down_span)),
        "dropped_during_scale_down": len(
            [o for o in errors if down_span[0] <= o.request.arrival_s < down_span[1]]
        ),
        "reached_zero_at_s": zero[0].t if zero else None,
        "seconds_at_zero": len(zero),
        "from_zero": [
            from_zero(outcomes, history, 0.0, segments[0].seconds),
            from_zero(outcomes, history, back, math.inf),
        ],
        "group_startup_s": startup_seconds(samples),
        "leftover_pids": raw["leftover_pids"],
        "decisions": [{k: h[k] for k in ("t", "previous", "desired", "mode", "reason")} for h in history],
        "timeline": [asdict(s) for s in samples],
    }


def predicted(
    requests: list[Request],
    segments: tuple[Segment, ...],
    policy: Policy,
    capacity: CapacityModel,
    window: float,
) -> dict[str, Any]:
    """The replayer's figures for the same trace, policy and (measured) group startup, its TTFT p95
    and demand read over the last `window` seconds (the benchmark's 60; `up` reads one period)."""
    trace = Trace(
        "live",
        tuple(TraceRequest(r.arrival_s, r.prompt_tokens, r.output_tokens) for r in requests),
        sum(s.seconds for s in segments),
    )
    result = replay(trace, capacity, _bench_run().Ours(policy), initial_units=0, signal_window=window)
    step = segment_start(segments, "step")
    back = segment_start(segments, "from-zero")
    summary = replay_metrics.summarize(result, OBJECTIVE)
    at_zero = [c for c in result.counts if c.current == 0 and c.time > step]
    return {
        "signal_window_s": window,
        "within_objective": summary.slo_attainment,
        "dropped": summary.dropped,
        "unserved": summary.unserved,
        "decision_s": replay_metrics.decision_time(result, step),
        "capacity_back_s": replay_metrics.capacity_back(result, step, need_for(segments[1].rate, capacity)),
        "peak_units": summary.peak_units,
        "actions": summary.actions,
        "reached_zero_at_s": at_zero[0].time if at_zero else None,
        "from_zero_decision_s": next(
            (p.time - back for p in result.passes if p.time >= back and p.current == 0 < p.desired), None
        ),
    }


def capacity_of(startup: float) -> CapacityModel:
    """The example's simulator as the replayer's unit: 4 slots, 20 tokens/s per request, 4,000 prompt
    tokens/s (0.25 ms a token), ready `startup` seconds after it is asked for."""
    return CapacityModel(
        slots=4,
        engine_queue=10_000,  # the simulator queues without bound; the router never holds
        prefill_tokens_per_second=4000.0,
        decode_tokens_per_second=20.0,
        kv_tokens=131_072,
        gpus_per_unit=1,
        pending_delay=0.0,
        cold_start=startup,
    )


def run(
    spec: Path, segments: tuple[Segment, ...], seed: int = 1, log_dir: Path | None = None
) -> dict[str, Any]:
    """The live run and the replayer's prediction for it, as one JSON-ready record."""
    log_dir = log_dir or LOGS / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = live_run(spec, segments, seed, log_dir)
    startups = startup_seconds(raw["samples"])
    startup = statistics.median(startups) if startups else math.nan
    capacity = capacity_of(startup)
    _, policy_doc = spec_documents(spec)
    policy = core_policy(AutoscalingPolicy.model_validate(policy_doc))
    assert isinstance(policy, Policy), "the live run scales whole ModelServings"
    return {
        "spec": str(spec.relative_to(ROOT) if spec.is_relative_to(ROOT) else spec),
        "segments": [asdict(s) for s in segments],
        "seed": seed,
        "objective_s": OBJECTIVE,
        "logs": str(log_dir),
        "live": live_figures(raw, segments, capacity),
        "replayer": predicted(make_requests(segments, seed), segments, policy, capacity, 60.0)
        | {"startup_s": startup},
        "replayer_period": predicted(make_requests(segments, seed), segments, policy, capacity, policy.period)
        | {"startup_s": startup},
    }


def report(result: dict[str, Any]) -> str:
    live, model, near = result["live"], result["replayer"], result["replayer_period"]
    rows = [
        ("requests", live["requests"], "-", "-"),
        *(
            (name, live[key], model[key], near[key])
            for name, key in (
                ("dropped (must be 0)", "dropped"),
                ("within TTFT objective", "within_objective"),
                ("step: decision (s)", "decision_s"),
                (f"step: {live['need']} groups ready after (s)", "capacity_back_s"),
                ("peak groups", "peak_units"),
                ("actions", "actions"),
                ("at zero groups from (s)", "reached_zero_at_s"),
            )
        ),
        (
            "from zero again: decision (s)",
            live["from_zero"][1]["decision_s"],
            model["from_zero_decision_s"],
            near["from_zero_decision_s"],
        ),
    ]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}"
        return "-" if value is None else str(value)

    lines = [
        "| figure | live | replayer, 60 s windows | replayer, windows of one period |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {cell(a)} | {cell(b)} | {cell(c)} |" for name, a, b, c in rows]
    for z in live["from_zero"]:
        lines.append(
            f"\nfrom zero at {z['at_s']:.0f} s: {z['requests']} requests, {z['dropped']} dropped, "
            f"group asked for after {cell(z['decision_s'])} s, longest TTFT {cell(z['ttft_max_s'])} s"
        )
    lines.append(
        f"\nscale-down: {live['scale_downs']} decisions, {live['requests_during_scale_down']} requests "
        f"arrived while groups left, {live['dropped_during_scale_down']} dropped; group startup (s): "
        f"{', '.join(f'{s:.1f}' for s in live['group_startup_s']) or '-'}; leftover processes: "
        f"{len(live['leftover_pids'])}"
    )
    return "\n".join(lines)


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help="ModelServing + AutoscalingPolicy file")
    parser.add_argument("--short", action="store_true", help="the < 1 minute shape (needs a faster policy)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the whole record (timeline included) as JSON")
    args = parser.parse_args()
    started = datetime.now(UTC)
    result = run(args.spec.resolve(), SHORT if args.short else FULL, args.seed)
    result["machine"] = machine_info()
    result["started"] = started.isoformat(timespec="seconds")
    result["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(report(result))
    for d in result["live"]["decisions"]:
        print(f"  {d['t']:7.1f} s  {d['previous']} -> {d['desired']} ({d['mode']}): {d['reason']}")


if __name__ == "__main__":
    main()
