from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.router.policies import PolicyConfig, PrefixIndex, RoutingRequest
from tests.unit.router.policies.helpers import BLOCK, blocks, request

TTL = 100.0


def index(capacity: int = 1000, max_blocks: int = 64) -> PrefixIndex:
    return PrefixIndex(block_chars=BLOCK, max_blocks=max_blocks, capacity=capacity, ttl_s=TTL, refresh_s=0.0)


def hashes(text: str, *, model: str = "m", salt: str | None = None, max_blocks: int = 64) -> list[int]:
    return index(max_blocks=max_blocks).block_hashes(RoutingRequest(model, text, cache_salt=salt))


# --- hashing -------------------------------------------------------------------------------


def test_one_hash_per_whole_block() -> None:
    assert len(hashes(blocks("a", "b", "c"))) == 3
    assert len(hashes(blocks("a", "b") + "partial")) == 2
    assert hashes("x" * (BLOCK - 1)) == []


def test_the_same_block_hashes_differently_at_another_position() -> None:
    h = hashes(blocks("a", "a", "b", "a"))
    assert len(set(h)) == 4
    assert hashes(blocks("b"))[0] != h[2]


def test_block_hash_depends_on_every_earlier_block() -> None:
    assert hashes(blocks("a", "b", "c"))[2] != hashes(blocks("x", "b", "c"))[2]


def test_a_shared_prefix_shares_exactly_its_hashes() -> None:
    one = hashes(blocks("a", "b", "c", "d"))
    other = hashes(blocks("a", "b", "x", "d"))
    assert one[:2] == other[:2]
    assert one[2] != other[2]
    assert one[3] != other[3]


def test_models_and_cache_salts_never_share_blocks() -> None:
    text = blocks("a")
    assert hashes(text, model="m") != hashes(text, model="n")
    assert hashes(text, salt="tenant-1") != hashes(text, salt="tenant-2")
    assert hashes(text, salt="tenant-1") != hashes(text)


def test_blocks_past_the_limit_are_not_hashed() -> None:
    assert len(hashes(blocks(*"abcdefgh"), max_blocks=5)) == 5


def test_from_config_uses_the_configured_block_size() -> None:
    idx = PrefixIndex.from_config(PolicyConfig(block_chars=16, max_prefix_blocks=3))
    assert len(idx.block_hashes(RoutingRequest("m", "x" * 40))) == 2
    assert len(idx.block_hashes(RoutingRequest("m", "x" * 400))) == 3


# --- matching ------------------------------------------------------------------------------


def test_nothing_recorded_nothing_matched() -> None:
    assert index().matches(hashes(blocks("a", "b")), {"x"}, 0.0) == {}


def test_a_backend_holds_what_it_was_sent() -> None:
    idx = index()
    idx.record(hashes(blocks("a", "b", "c")), "x", 0.0)
    assert idx.matches(hashes(blocks("a", "b", "c", "d")), {"x", "y"}, 1.0) == {"x": 3}
    assert idx.matches(hashes(blocks("a", "b", "z")), {"x", "y"}, 1.0) == {"x": 2}
    assert idx.matches(hashes(blocks("z", "b", "c")), {"x", "y"}, 1.0) == {}


def test_each_backend_gets_its_own_depth() -> None:
    idx = index()
    idx.record(hashes(blocks("s", "s", "q", "1")), "x", 0.0)
    idx.record(hashes(blocks("s", "s", "q", "2")), "y", 0.0)
    idx.record(hashes(blocks("s", "s")), "z", 0.0)
    idx.record(hashes(blocks("t")), "w", 0.0)
    query = hashes(blocks("s", "s", "q", "1", "more"))
    assert idx.matches(query, {"x", "y", "z", "w"}, 1.0) == {"x": 4, "y": 3, "z": 2}


def test_only_the_named_backends_are_matched() -> None:
    idx = index()
    idx.record(hashes(blocks("a", "b")), "x", 0.0)
    idx.record(hashes(blocks("a")), "y", 0.0)
    assert idx.matches(hashes(blocks("a", "b")), {"y"}, 1.0) == {"y": 1}


def test_entries_expire_after_the_ttl() -> None:
    idx = index()
    idx.record(hashes(blocks("a", "b")), "x", 0.0)
    idx.record(hashes(blocks("a")), "x", 50.0)
    assert idx.matches(hashes(blocks("a", "b")), {"x"}, TTL + 1.0) == {"x": 1}
    assert idx.matches(hashes(blocks("a", "b")), {"x"}, TTL + 51.0) == {}


def test_expired_entries_leave_the_index() -> None:
    idx = index()
    idx.record(hashes(blocks("a", "b")), "x", 0.0)
    idx.record(hashes(blocks("c")), "x", TTL + 1.0)
    assert len(idx) == 1


def test_forget_drops_what_a_backend_was_sent_before() -> None:
    idx = index()
    idx.record(hashes(blocks("a")), "x", 0.0)
    idx.record(hashes(blocks("a")), "y", 0.0)
    idx.forget("x", 5.0)
    assert idx.matches(hashes(blocks("a")), {"x", "y"}, 6.0) == {"y": 1}
    idx.record(hashes(blocks("a")), "x", 7.0)
    assert idx.matches(hashes(blocks("a")), {"x", "y"}, 8.0) == {"x": 1, "y": 1}


def test_capacity_drops_the_tail_of_a_prefix_before_its_head() -> None:
    idx = index(capacity=3)
    idx.record(hashes(blocks("a", "b", "c", "d", "e")), "x", 0.0)
    assert len(idx) == 3
    assert idx.matches(hashes(blocks("a", "b", "c", "d", "e")), {"x"}, 1.0) == {"x": 3}


def test_least_recently_sent_prefixes_go_first() -> None:
    idx = index(capacity=4)
    idx.record(hashes(blocks("a", "b")), "x", 0.0)
    idx.record(hashes(blocks("c", "d")), "x", 1.0)
    idx.record(hashes(blocks("a")), "x", 2.0)
    idx.record(hashes(blocks("e")), "x", 3.0)
    assert idx.matches(hashes(blocks("a", "b")), {"x"}, 4.0) == {"x": 1}
    assert idx.matches(hashes(blocks("c", "d")), {"x"}, 4.0) == {"x": 2}


def test_a_prompt_sent_again_within_the_refresh_interval_changes_nothing() -> None:
    idx = PrefixIndex(block_chars=BLOCK, max_blocks=64, capacity=1000, ttl_s=TTL, refresh_s=10.0)
    hs = hashes(blocks("a", "b"))
    idx.record(hs, "x", 0.0)
    idx.record(hs, "x", 5.0)
    assert idx.matches(hs, {"x"}, TTL + 1.0) == {}
    idx.record(hs, "x", 20.0)
    assert idx.matches(hs, {"x"}, TTL + 15.0) == {"x": 2}


def test_within_the_refresh_interval_new_blocks_and_new_backends_are_still_recorded() -> None:
    idx = PrefixIndex(block_chars=BLOCK, max_blocks=64, capacity=1000, ttl_s=TTL, refresh_s=10.0)
    idx.record(hashes(blocks("a", "b")), "x", 0.0)
    idx.record(hashes(blocks("a", "b", "c")), "x", 1.0)
    idx.record(hashes(blocks("a", "b")), "y", 2.0)
    assert idx.matches(hashes(blocks("a", "b", "c")), {"x", "y"}, 3.0) == {"x": 3, "y": 2}


def test_a_forgotten_backend_is_recorded_again_at_once() -> None:
    idx = PrefixIndex(block_chars=BLOCK, max_blocks=64, capacity=1000, ttl_s=TTL, refresh_s=10.0)
    hs = hashes(blocks("a"))
    idx.record(hs, "x", 0.0)
    idx.forget("x", 1.0)
    idx.record(hs, "x", 2.0)
    assert idx.matches(hs, {"x"}, 3.0) == {"x": 1}


def test_hashes_of_one_request_are_computed_once() -> None:
    idx = index()
    req = request(blocks("a", "b"))
    assert idx.block_hashes(req) is idx.block_hashes(req)
    assert idx.block_hashes(request(blocks("a", "b"))) == idx.block_hashes(req)


# --- properties ----------------------------------------------------------------------------

# Small alphabets, so that prompts share prefixes often.
PROMPT = st.lists(st.sampled_from("abc"), min_size=0, max_size=6).map(lambda letters: blocks(*letters))
EVENT = st.tuples(PROMPT, st.sampled_from(["x", "y", "z"]), st.floats(min_value=0, max_value=30))


def reference_matches(
    history: list[tuple[list[int], str, float]], query: list[int], capacity: int, now: float
) -> dict[str, int]:
    """The walk the index replaces: block by block from the start, replaying the LRU by hand."""
    last_touch: dict[int, float] = {}
    sent: dict[tuple[int, str], float] = {}
    order: list[int] = []
    for hs, name, at in history:
        for h in reversed(hs):
            sent[h, name] = at
            last_touch[h] = at
            if h in order:
                order.remove(h)
            order.append(h)
        while len(order) > capacity:
            evicted = order.pop(0)
            for key in [k for k in sent if k[0] == evicted]:
                del sent[key]
        while order and last_touch[order[0]] < at - TTL:
            evicted = order.pop(0)
            for key in [k for k in sent if k[0] == evicted]:
                del sent[key]
    found: dict[str, int] = {}
    for name in ("x", "y", "z"):
        depth = 0
        for h in query:
            if sent.get((h, name), -1e9) < now - TTL:
                break
            depth += 1
        if depth:
            found[name] = depth
    return found


@settings(max_examples=40, deadline=None)
@given(st.lists(EVENT, max_size=12), PROMPT, st.integers(min_value=1, max_value=12))
def test_binary_search_agrees_with_walking_block_by_block(
    events: list[tuple[str, str, float]], query: str, capacity: int
) -> None:
    idx = index(capacity=capacity)
    history: list[tuple[list[int], str, float]] = []
    now = 0.0
    for text, name, step in events:
        now += step
        hs = idx.block_hashes(request(text))
        idx.record(hs, name, now)
        history.append((hs, name, now))
    q = idx.block_hashes(request(query))
    assert idx.matches(q, {"x", "y", "z"}, now) == reference_matches(history, q, capacity, now)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(PROMPT, st.sampled_from(["x", "y", "z"])), max_size=40), st.integers(1, 20))
def test_the_index_never_holds_more_than_its_capacity(events: list[tuple[str, str]], capacity: int) -> None:
    idx = index(capacity=capacity)
    for t, (text, name) in enumerate(events):
        idx.record(idx.block_hashes(request(text)), name, float(t))
        assert len(idx) <= capacity
