"""Every knob of the routing policies in one value, with the reason behind each default."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class PolicyConfig:
    """Tuning shared by all policies; the defaults are argued here and measured in `bench/`.

    Costs are sums of terms in [0, 1] times a weight, so a weight reads as "how many full
    prefix misses (or full loads) this term is worth". See `scored.py` for the formula.
    """

    # Prefix hashing. 128 characters is the block production-stack and AIBrix hash (about
    # 32 tokens); only whole blocks are hashed, as an engine caches only whole token blocks.
    block_chars: int = 128
    # Blocks hashed per request: 256 x 128 = 32 KiB of prompt text. Past that the choice is
    # made already and hashing more only costs time.
    max_prefix_blocks: int = 256
    # Block hashes remembered across all backends (least recently used go first). About eight
    # million characters of distinct prefixes: the KV cache of some eight mid-sized engines.
    # Each entry costs roughly 300 bytes, so the default bounds the index near 20 MiB.
    index_capacity: int = 65_536
    # A block a backend has not been sent for this long is taken to be evicted by its engine
    # (the window of Dynamo's approximate mode and vllm-router's eviction interval).
    index_ttl_s: float = 120.0

    # Cost weights. prefix_weight >= load_weight + kv_weight: a backend holding the whole prefix
    # beats one holding none whatever their loads, and only the balance guard moves such a
    # request. A half hit is not worth being the busiest backend against an idle one
    # (1.5 + 2 > 3). Queue and KV pressure together (3) match a full miss, as in GIE's default
    # profile (queue 2, KV 2, prefix 3), with KV lighter because usage counts running requests
    # that the load term already sees.
    prefix_weight: float = 3.0
    load_weight: float = 2.0
    kv_weight: float = 1.0
    # `auto` only: the backend a session hashes to is worth a third of a full prefix hit.
    session_weight: float = 1.0
    # Load is normalised by max(highest load among candidates, this): with one or two requests
    # in flight nobody is busy, and a difference of one must not outweigh a prefix hit.
    load_floor: float = 8.0

    # Balance guard (vllm-router cache_aware): go least-loaded when the busiest candidate has
    # more than `imbalance_abs` requests over the idlest and more than `imbalance_rel` times
    # as many. AIBrix uses 16 for the first; vllm-router 64 and 1.5.
    imbalance_abs: float = 16.0
    imbalance_rel: float = 1.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"PolicyConfig.{f.name} must be a finite number >= 0, got {value!r}")
        for name in ("block_chars", "max_prefix_blocks", "index_capacity"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PolicyConfig.{name} must be a positive integer, got {value!r}")
        if self.index_ttl_s <= 0:
            raise ValueError(f"PolicyConfig.index_ttl_s must be > 0, got {self.index_ttl_s!r}")
        if self.imbalance_rel < 1:
            raise ValueError(f"PolicyConfig.imbalance_rel must be >= 1, got {self.imbalance_rel!r}")

    @property
    def prefix_chars(self) -> int:
        """The longest prompt text that hashing looks at; `routing_request` need render no more."""
        return self.block_chars * self.max_prefix_blocks
