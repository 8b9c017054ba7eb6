"""KV-cache block manager with prefix caching: pure bookkeeping, no time and no I/O.

Each full block of tokens gets a chained hash (the parent block's hash and the block's token
ids), so equal prefixes map to equal hash chains. Blocks are ref-counted; a block whose count
drops to zero keeps its hash and stays reusable until it is evicted, least recently freed first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

_ROOT_HASH = b"phalanx-sim-root"


def block_hash(parent: bytes, tokens: Sequence[int]) -> bytes:
    data = parent + b"".join(t.to_bytes(4, "big") for t in tokens)
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class _Block:
    block_id: int
    ref_count: int = 0
    hash: bytes | None = None


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be >= 1")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._blocks = [_Block(i) for i in range(num_blocks)]
        # Blocks with ref_count 0, in eviction order: the first is reused first.
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._cached: dict[bytes, int] = {}
        self._tables: dict[str, list[int]] = {}
        self._hashes: dict[str, list[bytes]] = {}

    # -- queries -------------------------------------------------------------------------------

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks held by running sequences (cached free blocks count as free, as in vLLM)."""
        return 1.0 - len(self._free) / self.num_blocks

    @property
    def num_cached_blocks(self) -> int:
        return len(self._cached)

    def block_table(self, seq_id: str) -> list[int]:
        return list(self._tables.get(seq_id, ()))

    @property
    def owners(self) -> set[str]:
        """Every key that holds blocks: live sequences and leases (see leases.py)."""
        return set(self._tables)

    def ref_count(self, block_id: int) -> int:
        return self._blocks[block_id].ref_count

    def hash_chain(self, tokens: Sequence[int]) -> list[bytes]:
        size = self.block_size
        chain: list[bytes] = []
        parent = _ROOT_HASH
        for start in range(0, len(tokens) - size + 1, size):
            parent = block_hash(parent, tokens[start : start + size])
            chain.append(parent)
        return chain

    def cached_prefix_tokens(self, tokens: Sequence[int]) -> int:
        """How many leading tokens the cache holds; the last token is always recomputed (as vLLM),
        because its forward pass produces the next token's logits."""
        return len(self._hit_blocks(self.hash_chain(tokens), len(tokens))) * self.block_size

    def _hit_blocks(self, chain: list[bytes], num_tokens: int) -> list[int]:
        limit = (num_tokens - 1) // self.block_size
        hits: list[int] = []
        for h in chain[:limit]:
            block_id = self._cached.get(h)
            if block_id is None:
                break
            hits.append(block_id)
        return hits

    # -- changes -------------------------------------------------------------------------------

    def allocate(self, seq_id: str, tokens: Sequence[int]) -> int | None:
        """Give `seq_id` blocks for all of `tokens`, reusing cached prefix blocks.

        Returns the number of prefix-cached tokens, or None (and changes nothing) when the free
        blocks do not suffice.
        """
        if seq_id in self._tables:
            raise ValueError(f"{seq_id} already holds blocks")
        chain = self.hash_chain(tokens)
        hits = self._hit_blocks(chain, len(tokens))
        needed = -(-len(tokens) // self.block_size) - len(hits)
        # A hit on a free cached block takes it out of the free pool, so it cannot count twice.
        free_hits = sum(1 for b in hits if self._blocks[b].ref_count == 0)
        if needed > len(self._free) - free_hits:
            return None
        for block_id in hits:
            self._take(block_id)
        table = list(hits)
        for _ in range(needed):
            table.append(self._take(self._evict()))
        self._tables[seq_id] = table
        self._hashes[seq_id] = list(chain[: len(hits)])
        self._register_full_blocks(seq_id, tokens)
        return len(hits) * self.block_size

    def ensure_capacity(self, seq_id: str, tokens: Sequence[int]) -> bool:
        """Grow `seq_id`'s table to hold `tokens`; False (nothing changed) when no block is free."""
        table = self._tables[seq_id]
        needed = -(-len(tokens) // self.block_size) - len(table)
        if needed > len(self._free):
            return False
        for _ in range(needed):
            table.append(self._take(self._evict()))
        self._register_full_blocks(seq_id, tokens)
        return True

    def rename(self, seq_id: str, owner: str) -> list[int]:
        """Hand `seq_id`'s blocks to `owner` unchanged (a finished prefill keeps its KV under a
        lease); returns the block ids."""
        if owner in self._tables:
            raise ValueError(f"{owner} already holds blocks")
        table = self._tables.pop(seq_id)
        self._tables[owner] = table
        self._hashes[owner] = self._hashes.pop(seq_id)
        return list(table)

    def free(self, seq_id: str) -> None:
        table = self._tables.pop(seq_id, None)
        self._hashes.pop(seq_id, None)
        if table is None:
            return
        # Free the tail first so a sequence's later blocks are evicted before its shared prefix.
        for block_id in reversed(table):
            block = self._blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self._free[block_id] = None
                if block.hash is None:
                    self._free.move_to_end(block_id, last=False)  # worthless: reuse it first

    # -- internals -----------------------------------------------------------------------------

    def _take(self, block_id: int) -> int:
        block = self._blocks[block_id]
        if block.ref_count == 0:
            del self._free[block_id]
        block.ref_count += 1
        return block_id

    def _evict(self) -> int:
        block_id = next(iter(self._free))
        block = self._blocks[block_id]
        if block.hash is not None:
            if self._cached.get(block.hash) == block_id:
                del self._cached[block.hash]
            block.hash = None
        return block_id

    def _register_full_blocks(self, seq_id: str, tokens: Sequence[int]) -> None:
        """Hash each block that `tokens` fills completely and publish it to the prefix cache."""
        table = self._tables[seq_id]
        hashes = self._hashes[seq_id]
        size = self.block_size
        while (len(hashes) + 1) * size <= len(tokens):
            index = len(hashes)
            parent = hashes[-1] if hashes else _ROOT_HASH
            h = block_hash(parent, tokens[index * size : (index + 1) * size])
            hashes.append(h)
            block = self._blocks[table[index]]
            if block.hash is None:
                block.hash = h
                self._cached.setdefault(h, block.block_id)
