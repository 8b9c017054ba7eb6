"""Figures of one run (pure): latency percentiles, goodput against stated objectives.

Goodput counts the requests that met both objectives:
- time to first token <= `ttft_base_s + ttft_per_token_s * prompt tokens` (a short prompt gets
  about a second; a 32k prompt, whose prefill alone takes 8 s on an idle simulated GPU, about 17 s);
- the request's own p99 inter-token gap <= `itl_p99_s`.
A failed or abandoned request meets neither.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from openloop import Outcome


@dataclass(frozen=True)
class Objectives:
    ttft_base_s: float = 1.0
    ttft_per_token_s: float = 0.0005  # twice the simulator's prefill cost per token (0.25 ms)
    itl_p99_s: float = 0.100  # 10 tokens/s: still faster than a person reads

    def ttft_limit_s(self, prompt_tokens: int) -> float:
        return self.ttft_base_s + self.ttft_per_token_s * prompt_tokens

    def met(self, out: Outcome) -> bool:
        if not out.ok or out.ttft_s is None:
            return False
        if out.ttft_s > self.ttft_limit_s(out.request.prompt_tokens):
            return False
        return not out.gaps_s or percentile(out.gaps_s, 0.99) <= self.itl_p99_s


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _ms(values: Iterable[float], q: float) -> float:
    return percentile(list(values), q) * 1000


def summarize(outcomes: Sequence[Outcome], duration_s: float, objectives: Objectives) -> dict[str, Any]:
    ok = [o for o in outcomes if o.ok]
    short = [o for o in ok if not o.request.long]
    long = [o for o in ok if o.request.long]
    gaps = [g for o in ok for g in o.gaps_s]
    met = [o for o in outcomes if objectives.met(o)]
    wrong_length = sum(1 for o in ok if o.completion_tokens != o.request.output_tokens)
    return {
        "requests": len(outcomes),
        "long_requests": sum(1 for o in outcomes if o.request.long),
        "completed": len(ok),
        "errors": dict(Counter(o.error for o in outcomes if o.error)),
        "wrong_length": wrong_length,
        "ttft_p50_ms": _ms((o.ttft_s for o in ok if o.ttft_s is not None), 0.50),
        "ttft_p90_ms": _ms((o.ttft_s for o in ok if o.ttft_s is not None), 0.90),
        "ttft_short_p50_ms": _ms((o.ttft_s for o in short if o.ttft_s is not None), 0.50),
        "ttft_long_p50_ms": _ms((o.ttft_s for o in long if o.ttft_s is not None), 0.50),
        "itl_p50_ms": _ms(gaps, 0.50),
        "itl_p99_ms": _ms(gaps, 0.99),
        "itl_p999_ms": _ms(gaps, 0.999),
        "itl_max_ms": max(gaps, default=float("nan")) * 1000,
        "gaps_over_objective": sum(1 for g in gaps if g > objectives.itl_p99_s),
        "gaps": len(gaps),
        "goodput_rps": len(met) / duration_s if duration_s else float("nan"),
        "goodput_share": len(met) / len(outcomes) if outcomes else float("nan"),
    }
