"""What a trace is: requests with an arrival time and token counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    arrival: float  # seconds from the start of the trace
    prompt_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class Trace:
    name: str
    requests: tuple[Request, ...]  # sorted by arrival
    duration: float  # seconds; arrivals lie in [0, duration)

    def __post_init__(self) -> None:
        arrivals = [r.arrival for r in self.requests]
        if arrivals != sorted(arrivals):
            raise ValueError(f"trace {self.name!r}: requests must be sorted by arrival time")
        if arrivals and not (arrivals[0] >= 0 and arrivals[-1] < self.duration):
            raise ValueError(f"trace {self.name!r}: arrivals must lie in [0, {self.duration})")
