"""What the benchmark reads from each simulator's `/metrics` (Prometheus text), before and after a run."""

from __future__ import annotations

from collections import defaultdict

from procs import get

# Prompts of at most this many tokens are short (the workload's are at most 1024; the next
# bucket of vllm:request_prompt_tokens, 1-2-5 spaced, is 2000).
SHORT_BUCKET = "2000"


def scrape(url: str) -> dict[str, float]:
    """Every sample summed over its labels, except `le` (histogram buckets stay apart as `name{le}`);
    also each series under `name|labels` for the few read by label value."""
    status, body = get(f"{url}/metrics", timeout=10)
    out: dict[str, float] = defaultdict(float)
    if status != 200:
        return out
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        pairs = [p.split("=", 1) for p in labels.rstrip("}").split(",") if "=" in p]
        le = next((v.strip('"') for k, v in pairs if k == "le"), None)
        key = f"{name}{{{float(le):g}}}" if le is not None else name
        try:
            out[key] += float(value)
        except ValueError:
            continue
        if le is None and labels:
            out[f"{name}|{labels}"] += float(value)
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after.keys() | before.keys()}


def matching(sample: dict[str, float], *words: str) -> float:
    """Sum of the series whose name holds every one of `words` (the PD metric names are the
    simulator's own; the benchmark finds them by meaning, and reports which names it read)."""
    return sum(v for k, v in sample.items() if "{" not in k and "|" not in k and all(w in k for w in words))


def labelled(sample: dict[str, float], word: str, value: str) -> float:
    """Sum of the series of a name holding `word` with a label equal to `value`."""
    return sum(v for k, v in sample.items() if "|" in k and word in k and f'="{value}"' in k)


def names_matching(sample: dict[str, float], *words: str) -> list[str]:
    return sorted(k for k in sample if "{" not in k and "|" not in k and all(w in k for w in words))


def short_prompts(d: dict[str, float]) -> float:
    """Requests with a short prompt that this engine served during the run (from the delta)."""
    return d.get(f"vllm:request_prompt_tokens_bucket{{{SHORT_BUCKET}}}", 0.0)
