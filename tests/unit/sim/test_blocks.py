from __future__ import annotations

import pytest

from phalanx.sim.blocks import BlockManager


def toks(n: int, start: int = 0) -> list[int]:
    return list(range(start, start + n))


def test_allocate_takes_ceil_blocks_and_free_returns_them() -> None:
    bm = BlockManager(num_blocks=10, block_size=4)
    assert bm.allocate("a", toks(9)) == 0
    assert len(bm.block_table("a")) == 3
    assert bm.num_free_blocks == 7
    assert bm.usage == pytest.approx(0.3)
    bm.free("a")
    assert bm.num_free_blocks == 10
    assert bm.usage == 0.0


def test_allocate_refuses_without_changing_anything() -> None:
    bm = BlockManager(num_blocks=3, block_size=4)
    assert bm.allocate("a", toks(8)) == 0
    assert bm.allocate("b", toks(8, 100)) is None
    assert bm.num_free_blocks == 1
    assert bm.block_table("b") == []
    with pytest.raises(ValueError):
        bm.allocate("a", toks(1))


def test_prefix_hit_shares_blocks_and_counts_refs() -> None:
    bm = BlockManager(num_blocks=10, block_size=4)
    bm.allocate("a", toks(10))  # two full blocks hashed, one partial
    assert bm.cached_prefix_tokens(toks(10)) == 8
    assert bm.allocate("b", toks(9)) == 8
    shared = bm.block_table("a")[:2]
    assert bm.block_table("b")[:2] == shared
    assert [bm.ref_count(b) for b in shared] == [2, 2]
    bm.free("a")
    assert [bm.ref_count(b) for b in shared] == [1, 1]


def test_last_token_is_never_a_hit() -> None:
    bm = BlockManager(num_blocks=10, block_size=4)
    bm.allocate("a", toks(8))
    # Exactly two full blocks: the last block must be recomputed to produce logits.
    assert bm.cached_prefix_tokens(toks(8)) == 4
    assert bm.allocate("b", toks(8)) == 4


def test_different_prefix_misses_even_with_equal_later_blocks() -> None:
    bm = BlockManager(num_blocks=10, block_size=4)
    bm.allocate("a", [1, 2, 3, 4, 5, 6, 7, 8, 9])
    # Same second block, different first block: the chained hash differs.
    assert bm.cached_prefix_tokens([0, 2, 3, 4, 5, 6, 7, 8, 9]) == 0


def test_freed_cached_blocks_stay_reusable_until_evicted() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    bm.allocate("a", toks(9))
    bm.free("a")
    assert bm.num_free_blocks == 4
    assert bm.allocate("b", toks(9)) == 8  # revived from the free pool
    assert bm.num_free_blocks == 1


def test_lru_eviction_order() -> None:
    bm = BlockManager(num_blocks=4, block_size=2)
    bm.allocate("old", [1, 2, 3])
    bm.free("old")
    bm.allocate("new", [7, 8, 9])
    bm.free("new")
    # Both prompts cached (one full block each); the partial blocks carry no hash.
    assert bm.num_cached_blocks == 2
    # Taking three blocks evicts the two hash-less blocks first, then the least recently freed.
    bm.allocate("c", [20, 21, 22, 23, 24])
    assert bm.cached_prefix_tokens([1, 2, 3]) == 0
    assert bm.cached_prefix_tokens([7, 8, 9]) == 2


def test_hit_on_free_block_is_not_counted_twice() -> None:
    bm = BlockManager(num_blocks=3, block_size=2)
    bm.allocate("a", [1, 2, 3, 4, 5])
    bm.free("a")
    # [1,2] and [3,4] are cached and free; "b" reuses both and needs one more: exactly 3.
    assert bm.allocate("b", [1, 2, 3, 4, 9]) == 4
    assert bm.num_free_blocks == 0


def test_ensure_capacity_grows_and_registers_generated_blocks() -> None:
    bm = BlockManager(num_blocks=3, block_size=2)
    seq = [1, 2, 3]
    bm.allocate("a", seq)
    seq.append(4)
    assert bm.ensure_capacity("a", seq)
    assert len(bm.block_table("a")) == 2
    seq.append(5)
    assert bm.ensure_capacity("a", seq)
    seq.append(6)
    assert bm.ensure_capacity("a", seq)
    seq.append(7)
    assert not bm.ensure_capacity("a", seq)  # out of blocks: nothing changed
    assert len(bm.block_table("a")) == 3
    bm.free("a")
    assert bm.cached_prefix_tokens([1, 2, 3, 4, 5, 6, 0]) == 6


def test_usage_counts_only_referenced_blocks() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    bm.allocate("a", toks(16))
    assert bm.usage == 1.0
    bm.free("a")
    assert bm.usage == 0.0
    assert bm.num_cached_blocks == 4
