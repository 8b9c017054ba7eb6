"""Traces for the benchmark: seeded generators, and a reader for the Azure LLM inference trace.

Synthetic token counts follow the Azure 2023 conversation trace (median prompt 1020 tokens, mean
1155; median output 129, mean 211): log-normal, with the spread that gives those means.
Arrivals are a Poisson process whose rate follows the trace's shape (thinning), so the same seed
gives the same trace.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from phalanx.autoscale.replay.trace import Request, Trace

PROMPT_MEDIAN, PROMPT_SIGMA, PROMPT_MAX = 1020.0, 0.49, 8192
OUTPUT_MEDIAN, OUTPUT_SIGMA, OUTPUT_MAX = 129.0, 0.99, 1000
PROMPT_MEAN, OUTPUT_MEAN = 1155.0, 211.0  # the Azure trace's means, which those spreads give


def _request(arrival: float, rng: random.Random) -> Request:
    prompt = round(rng.lognormvariate(math.log(PROMPT_MEDIAN), PROMPT_SIGMA))
    output = round(rng.lognormvariate(math.log(OUTPUT_MEDIAN), OUTPUT_SIGMA))
    return Request(arrival, min(max(prompt, 16), PROMPT_MAX), min(max(output, 1), OUTPUT_MAX))


def poisson(name: str, rate: Callable[[float], float], peak: float, duration: float, seed: int) -> Trace:
    """Arrivals at `rate(t)` requests/s (never above `peak`) for `duration` seconds."""
    rng = random.Random(seed)
    requests = []
    t = 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= duration:
            break
        if rng.random() * peak < rate(t):
            requests.append(_request(t, rng))
    return Trace(name, tuple(requests), duration)


def step(
    *, base: float = 3.0, factor: float = 4.0, at: float = 300.0, duration: float = 900.0, seed: int = 1
) -> Trace:
    """`base` requests/s, then `factor` times that from `at` on."""
    return poisson("step", lambda t: base if t < at else base * factor, base * factor, duration, seed)


def sine(
    *, low: float = 1.0, high: float = 24.0, period: float = 900.0, cycles: int = 2, seed: int = 2
) -> Trace:
    """A rate that swings from `low` to `high` and back once every `period` seconds."""

    def rate(t: float) -> float:
        return low + (high - low) * (1 - math.cos(2 * math.pi * t / period)) / 2

    return poisson("sine", rate, high, period * cycles, seed)


def steady(
    *, rate: float = 6.0, noise: float = 0.2, every: float = 10.0, duration: float = 1800.0, seed: int = 3
) -> Trace:
    """Stationary load: `rate` requests/s, each `every`-second stretch scaled by 1 +- `noise`."""
    rng = random.Random(seed + 1_000_003)
    scale = [1 + rng.uniform(-noise, noise) for _ in range(math.ceil(duration / every) + 1)]
    return poisson("steady", lambda t: rate * scale[int(t // every)], rate * (1 + noise), duration, seed)


def bursts(
    *, rate: float = 3.0, idle: float = 600.0, busy: float = 300.0, cycles: int = 2, seed: int = 4
) -> Trace:
    """`idle` seconds with no request, then `busy` seconds at `rate` requests/s, `cycles` times:
    long enough idle for a scaler allowed to reach zero to get there, then load to come back to."""
    period = idle + busy
    return poisson("bursts", lambda t: rate if t % period >= idle else 0.0, rate, period * cycles, seed)


def read_azure_llm(text: str, name: str = "azure-conv") -> Trace:
    """Read a slice of the Azure LLM inference trace as stored in this repository:
    a header, then `seconds,context_tokens,generated_tokens` per line (seconds from the slice's
    start)."""
    lines = [line for line in text.splitlines() if line.strip()]
    requests = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split(",")
        if len(fields) != 3:
            raise ValueError(f"{name}: line {number}: expected 3 fields, got {line!r}")
        requests.append(Request(float(fields[0]), int(fields[1]), int(fields[2])))
    duration = math.floor(requests[-1].arrival) + 1.0 if requests else 0.0
    return Trace(name, tuple(requests), duration)
