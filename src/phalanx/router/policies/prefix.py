"""The prefix index: which backends were recently sent which blocks of prompt text.

It is a guess at the engines' prefix caches made from the router's own decisions (engines are
not asked), as production-stack, AIBrix, vllm-router and GIE's approximate scorer do. The prompt
text is cut into blocks of `block_chars` characters; block i's hash covers blocks 0..i (each
hash folds in the previous one), so equal hashes mean equal prefixes, as in vLLM's own block
hashes, and one dictionary lookup per block finds how far a prefix is shared.

Hashes are Python's built-in string hash (SipHash, seeded per process): three to four times
faster than blake2b here, and the index never leaves the process. A collision costs one wrong
guess about a cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence

from phalanx.router.policies.config import PolicyConfig
from phalanx.router.policies.request import RoutingRequest

_NEVER = float("-inf")


class PrefixIndex:
    """Block hash -> {backend name: when it was last sent that block}, bounded two ways.

    - at most `capacity` block hashes, least recently sent dropped first; a request's blocks are
      touched last block first, so a prefix loses its tail before its head, as an engine's
      cache evicts it;
    - an entry older than `ttl_s` counts as evicted by the engine and is dropped lazily.

    Recording a prompt a backend was sent less than `refresh_s` ago (default `ttl_s / 100`)
    changes nothing and costs one lookup: the hot prefixes, sent over and over, are the common
    case. Their times then lag by at most `refresh_s`.

    Times are the caller's monotonic clock and must not go backwards.
    """

    __slots__ = ("_block", "_capacity", "_cleared", "_entries", "_max_blocks", "_memo", "_refresh", "_ttl")

    def __init__(
        self, block_chars: int, max_blocks: int, capacity: int, ttl_s: float, refresh_s: float | None = None
    ) -> None:
        self._block = block_chars
        self._max_blocks = max_blocks
        self._capacity = capacity
        self._ttl = ttl_s
        self._refresh = ttl_s / 100 if refresh_s is None else refresh_s
        self._entries: OrderedDict[int, dict[str, float]] = OrderedDict()
        # Backend name -> when its cache was declared empty (a recreated pod with an old name).
        self._cleared: dict[str, float] = {}
        # The last request hashed: `choose` and `record` of one request hash it once.
        self._memo: tuple[RoutingRequest, list[int]] | None = None

    @classmethod
    def from_config(cls, config: PolicyConfig) -> PrefixIndex:
        return cls(config.block_chars, config.max_prefix_blocks, config.index_capacity, config.index_ttl_s)

    def __len__(self) -> int:
        return len(self._entries)

    def block_hashes(self, request: RoutingRequest) -> list[int]:
        """Chained hashes of the request's whole blocks (at most `max_blocks`), seeded with the
        model and cache salt: two models on one backend never share cached blocks."""
        memo = self._memo
        if memo is not None and memo[0] is request:
            return memo[1]
        text = request.prefix_text
        size = self._block
        count = min(len(text) // size, self._max_blocks)
        h = hash((request.model, request.cache_salt))
        hashes = []
        for start in range(0, count * size, size):
            h = hash((h, text[start : start + size]))
            hashes.append(h)
        self._memo = (request, hashes)
        return hashes

    def matches(self, hashes: Sequence[int], names: Collection[str], now: float) -> dict[str, int]:
        """For each of `names` holding a prefix of `hashes`, how many leading blocks it holds.

        What a backend holds is always a whole prefix: every record that touches block j of a
        chain touches blocks 0..j-1 after it, so for each backend the head is never older (by
        time or in LRU order) than the tail, and expiry, eviction and `forget` take tails
        first. So each backend's depth is found by binary search: the deepest block some
        remaining backend holds gives those backends their depth, the rest are searched below
        it. O(distinct depths x log blocks) lookups; usually one round and one lookup.
        """
        found: dict[str, int] = {}
        remaining = set(names)
        top = len(hashes)
        horizon = now - self._ttl
        while remaining and top > 0:
            # Holding nothing of the first block, none of the rest can hold a prefix: one lookup
            # ends the last round instead of a whole search.
            depth = 1
            holders = self._holders(hashes[0], remaining, horizon)
            if not holders:
                break
            low, high = 2, top
            while low <= high:
                mid = (low + high) // 2
                here = self._holders(hashes[mid - 1], remaining, horizon)
                if here:
                    depth, holders = mid, here
                    low = mid + 1
                else:
                    high = mid - 1
            for name in holders:
                found[name] = depth
                remaining.discard(name)
            top = depth - 1
        return found

    def _holders(self, block: int, names: Collection[str], horizon: float) -> list[str]:
        """Which of `names` hold `block` now."""
        seen = self._entries.get(block)
        if seen is None:
            return []
        cleared = self._cleared
        return [
            name
            for name, at in seen.items()
            if at >= horizon and name in names and (not cleared or at >= cleared.get(name, _NEVER))
        ]

    def record(self, hashes: Sequence[int], name: str, now: float) -> None:
        """`name` was sent a request with these blocks: its engine holds them now."""
        entries = self._entries
        if hashes:
            # The last block is the oldest a backend holds of its prefix: fresh, all are.
            tail = entries.get(hashes[-1])
            at = None if tail is None else tail.get(name)
            if at is not None and at >= now - self._refresh and at >= self._cleared.get(name, _NEVER):
                return
        horizon = now - self._ttl
        for h in reversed(hashes):
            seen = entries.get(h)
            if seen is None:
                entries[h] = {name: now}
                continue
            if name not in seen:
                # An entry grows only here, so pruning here bounds it by the live holders.
                for other in [n for n, at in seen.items() if at < horizon]:
                    del seen[other]
            seen[name] = now
            entries.move_to_end(h)
        while len(entries) > self._capacity:
            entries.popitem(last=False)
        # The front is the least recently touched: expired entries leave from there.
        while entries and max(next(iter(entries.values())).values()) < horizon:
            entries.popitem(last=False)
        if self._cleared:
            for other in [n for n, at in self._cleared.items() if at < horizon]:
                del self._cleared[other]

    def forget(self, name: str, now: float) -> None:
        """Blocks `name` was sent before `now` are gone (its engine restarted, or a new pod took
        the name): O(1), they are skipped from then on and age out."""
        self._cleared[name] = now
