"""The PD benchmark's request mix (pure): open-loop Poisson arrivals with a fixed seed.

20 % of requests have a long prompt (8k-32k tokens), 80 % a short one (256-1024 tokens); every
output is 128-512 tokens. Prompts are built from words the simulator's tokenizer reads as one
token each (a space and at most six word characters), and each starts with words unique to the
request, so no two prompts share a KV block: every prompt token has to be computed once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

LONG_SHARE = 0.20
LONG_TOKENS = (8192, 32768)
SHORT_TOKENS = (256, 1024)
OUTPUT_TOKENS = (128, 512)
# Prompt + output must fit the engines' context: the simulators run with this --max-model-len.
MAX_MODEL_LEN = LONG_TOKENS[1] + OUTPUT_TOKENS[1] + 256


@dataclass(frozen=True)
class Request:
    index: int
    arrival_s: float  # offset from the start of the run
    prompt_tokens: int
    output_tokens: int

    @property
    def long(self) -> bool:
        return self.prompt_tokens >= LONG_TOKENS[0]


def make_workload(rate: float, duration_s: float, seed: int) -> list[Request]:
    """Poisson arrivals at `rate` per second for `duration_s`; the same seed gives the same list."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError(f"rate and duration must be positive, got {rate} and {duration_s}")
    rng = random.Random(f"pd-bench/{seed}/{rate}")
    out: list[Request] = []
    t = rng.expovariate(rate)
    while t < duration_s:
        span = LONG_TOKENS if rng.random() < LONG_SHARE else SHORT_TOKENS
        prompt = rng.randint(*span)
        output = rng.randint(*OUTPUT_TOKENS)
        out.append(Request(len(out), t, prompt, output))
        t += rng.expovariate(rate)
    return out


def _word(rng: random.Random) -> str:
    return " " + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 6)))


def prompt_text(request: Request, run_id: str) -> str:
    """`request.prompt_tokens` one-token words; the first ones name the run and the request."""
    head = f" r{run_id[:5]} q{request.index:05d}"  # two words of at most six characters
    rng = random.Random(f"{run_id}/{request.index}")
    words = [_word(rng) for _ in range(request.prompt_tokens - 2)]
    return head + "".join(words)
