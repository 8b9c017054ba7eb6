"""The capacity model: how one unit (a ServingGroup) serves requests, and how long a new one takes.

A unit runs a continuous batch of at most `slots` requests (vLLM's max_num_seqs). A request that
joins the batch is prefilled first; the unit prefills one prompt at a time at
`prefill_tokens_per_second`, so prompts queue behind each other inside the unit. Once prefilled,
the request decodes at `decode_tokens_per_second` whatever the batch size: continuous batching keeps
the time per output token roughly flat until the batch is full, and a full batch shows up as
queueing, which is what an autoscaler has to see. Requests beyond the batch wait in the engine's
queue (at most `engine_queue` of them); beyond that the router holds them.

This is deliberately simple: it has the two limits that matter for scaling (prompt throughput and
batch slots), it is deterministic, and every time in it can be computed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CapacityModel:
    slots: int = 16  # requests in one unit's batch
    engine_queue: int = 16  # requests a unit holds beyond its batch before the router keeps them
    prefill_tokens_per_second: float = 8000.0  # one prompt at a time, per unit
    decode_tokens_per_second: float = 30.0  # per request in the batch
    kv_tokens: int = 100_000  # KV-cache capacity of a unit, for the kv_usage estimate
    gpus_per_unit: int = 8
    pending_delay: float = 30.0  # from creation (once placeable) to scheduled and pulling
    cold_start: float = 120.0  # Tc: from scheduled to ready (weights loaded, engine up)
    max_units: int | None = None  # units the platform can place; None: no cap

    def __post_init__(self) -> None:
        problems = []
        if self.slots < 1:
            problems.append(f"slots must be >= 1, got {self.slots}")
        if self.engine_queue < 0:
            problems.append(f"engine_queue must be >= 0, got {self.engine_queue}")
        for name in ("prefill_tokens_per_second", "decode_tokens_per_second"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("pending_delay", "cold_start"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_units is not None and self.max_units < 0:
            problems.append(f"max_units must be >= 0 or None, got {self.max_units}")
        if problems:
            raise ValueError("capacity model: " + "; ".join(problems))

    def prefill_seconds(self, prompt_tokens: int) -> float:
        return prompt_tokens / self.prefill_tokens_per_second

    def decode_seconds(self, output_tokens: int) -> float:
        return output_tokens / self.decode_tokens_per_second

    @property
    def startup(self) -> float:
        """Seconds from a placeable unit's creation to ready."""
        return self.pending_delay + self.cold_start
