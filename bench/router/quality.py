"""Test 2, routing quality: a shared-prefix chat workload on several simulators with prefix caching.

Workload: `system_prompts` long system prompts; each request comes from one of `users` users, whose
conversation uses the system prompt `user % system_prompts`, and asks a fresh question of
`user_tokens` words (so the system prompt is the only prefix requests share). Popularity of the
users follows a Zipf law of exponent `skew` (0 = uniform). The same seed gives the same request
sequence for every contender. The simulator counts one token per word of at most six letters, so
word counts are token counts.

Each contender gets fresh simulators (cold caches) with a KV cache too small to hold every system
prompt, so where a request lands decides whether its prompt is prefilled or found in the cache.
TTFT is measured client-side on the stream; the prefix hit rate comes from the requests' own
`usage.prompt_tokens_details.cached_tokens` and, as a cross-check, from the simulators'
`vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total` over the measured window.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contenders import Contender, Unavailable
from loadgen import run_load
from procs import MODEL, Processes, scrape, start_sims

LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Workload:
    system_prompts: int = 8
    system_tokens: int = 1500
    users: int = 200
    user_tokens: int = 100
    max_tokens: int = 32
    skew: float = 0.0
    seed: int = 1

    def build(self) -> tuple[list[str], list[float], list[str]]:
        """The system prompts, the users' cumulative popularity, and the vocabulary."""
        rng = random.Random(self.seed)
        vocab = ["".join(rng.choices(LETTERS, k=rng.randint(2, 6))) for _ in range(5000)]
        prompts = [
            f"You are assistant {k}. " + " ".join(rng.choices(vocab, k=self.system_tokens))
            for k in range(self.system_prompts)
        ]
        weights = [1 / (u + 1) ** self.skew for u in range(self.users)]
        cumulative = list(itertools.accumulate(weights))
        return prompts, cumulative, vocab

    def factory(self) -> tuple[Any, Any]:
        prompts, cumulative, vocab = self.build()

        def user_of(n: int) -> int:
            rng = random.Random(self.seed * 1_000_003 + n)
            return bisect.bisect(cumulative, rng.random() * cumulative[-1])

        def request(n: int) -> tuple[str, dict[str, Any]]:
            rng = random.Random(self.seed * 7_000_003 + n)
            user = user_of(n)
            question = f"I am user {user}. " + " ".join(rng.choices(vocab, k=self.user_tokens))
            return "/v1/chat/completions", {
                "model": MODEL,
                "messages": [
                    {"role": "system", "content": prompts[user % self.system_prompts]},
                    {"role": "user", "content": question},
                ],
                "max_tokens": self.max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }

        def tag(n: int) -> str:
            return f"prompt-{user_of(n) % self.system_prompts}"

        return request, tag


def sim_args(kv_cache_tokens: int, max_model_len: int) -> list[str]:
    """Realistic timings: the simulator's defaults (an 8B model on one H100), stated explicitly."""
    return [
        "--kv-cache-tokens", str(kv_cache_tokens),
        "--max-model-len", str(max_model_len),
        "--block-size", "16",
        "--prefill-overhead", "0.030",
        "--prefill-time-per-token", "0.00025",
        "--inter-token-latency", "0.012",
        "--itl-batch-factor", "0.004",
    ]  # fmt: skip


def run(
    contenders: list[Contender],
    workload: Workload,
    backends: int,
    concurrency: int,
    rounds: int,
    warmup_s: float,
    duration_s: float,
    kv_cache_tokens: int,
    log_dir: Path,
    sim_tokenize: bool = True,
) -> dict[str, Any]:
    contenders = [c for c in contenders if c.kind != "direct"]
    request, tag = workload.factory()
    rows: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    for rnd in range(rounds):
        order = contenders[rnd % len(contenders) :] + contenders[: rnd % len(contenders)]
        for contender in order:
            if contender.spec in unavailable:
                continue
            label = f"quality-r{rnd + 1}"
            with Processes(log_dir / label / contender.spec.split()[0].replace(":", "-")) as procs:
                sims = start_sims(procs, backends, sim_args(kv_cache_tokens, 4096), tokenize=sim_tokenize)
                try:
                    _, url = contender.start(procs, sims, label)
                except Unavailable as exc:
                    unavailable[contender.spec] = str(exc)
                    print(f"  {contender.spec}: unavailable: {exc}", flush=True)
                    continue
                snapshots: dict[str, list[dict[str, float]]] = {}

                def on_window(
                    edge: str,
                    sims: list[str] = sims,
                    snapshots: dict[str, list[dict[str, float]]] = snapshots,
                ) -> None:
                    snapshots[edge] = [scrape(s) for s in sims]

                result = asyncio.run(
                    run_load(url, request, concurrency, warmup_s, duration_s, tags=tag, on_window=on_window)
                )
            deltas = [
                {k: end[k] - start[k] for k in end}
                for start, end in zip(snapshots["start"], snapshots["end"], strict=True)
            ]
            queries = sum(d["vllm:prefix_cache_queries_total"] for d in deltas)
            row = {
                "round": rnd + 1,
                "contender": contender.spec,
                **result.summary(),
                "sim_hit_rate": sum(d["vllm:prefix_cache_hits_total"] for d in deltas) / queries
                if queries
                else float("nan"),
                "per_backend": [round(d["vllm:request_success_total"]) for d in deltas],
                "preemptions": sum(d["vllm:num_preemptions_total"] for d in deltas),
                "system_prompts_seen": len({s.tag for s in result.samples}),
            }
            rows.append(row)
            print(
                f"  round {rnd + 1} {contender.spec:<28} {row['rps']:6.1f} req/s TTFT p50 "
                f"{row['ttft_p50_ms']:7.1f} p90 {row['ttft_p90_ms']:7.1f} ms "
                f"hit {row['cached_fraction']:.2f} (sims {row['sim_hit_rate']:.2f}) "
                f"per backend {row['per_backend']} "
                f"errors {sum(result.errors.values())}",
                flush=True,
            )
    return {"rows": rows, "unavailable": unavailable}


def table(rows: list[dict[str, Any]], rr_reference: str, ca_reference: str) -> str:
    specs = list(dict.fromkeys(r["contender"] for r in rows))
    lines = [
        "| contender | rounds | req/s | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | e2e p50 ms "
        "| prefix hit (client) | prefix hit (sims) | requests per backend (last round) | preemptions "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]

    def med(spec: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["contender"] == spec)

    for spec in specs:
        mine = [r for r in rows if r["contender"] == spec]
        p90s = ", ".join(f"{r['ttft_p90_ms']:.0f}" for r in mine)
        lines.append(
            f"| {spec} | {len(mine)} | {med(spec, 'rps'):.1f} | {med(spec, 'ttft_p50_ms'):.0f} "
            f"| {med(spec, 'ttft_p90_ms'):.0f} ({p90s}) | {med(spec, 'ttft_p99_ms'):.0f} "
            f"| {med(spec, 'p50_ms'):.0f} | {med(spec, 'cached_fraction'):.3f} "
            f"| {med(spec, 'sim_hit_rate'):.3f} "
            f"| {' / '.join(str(n) for n in mine[-1]['per_backend'])} | {med(spec, 'preemptions'):.0f} "
            f"| {sum(sum(r['errors'].values()) + r['abandoned'] for r in mine)} |"
        )
    lines.append("")
    lines.append("TTFT p90 column: median of rounds (each round in brackets).")
    ours = [s for s in specs if s.startswith("phalanx")]
    refs = [(rr_reference, 0.5), (ca_reference, 0.9)]
    if ours and any(ref in specs for ref, _ in refs):
        lines += ["", "| ours | vs | TTFT p90 ratio | goal | met |", "|---|---|---:|---:|---|"]
        for us in ours:
            for ref, goal in refs:
                if ref in specs:
                    ratio = med(us, "ttft_p90_ms") / med(ref, "ttft_p90_ms")
                    lines.append(
                        f"| {us} | {ref} | {ratio:.2f} | ≤ {goal} | {'✓' if ratio <= goal else '✗'} |"
                    )
    return "\n".join(lines)
