from __future__ import annotations

import pytest

from phalanx.sim.blocks import BlockManager
from phalanx.sim.scheduler import LatencyModel, Scheduler, Sequence, StepResult, TokenOutput
from phalanx.sim.textgen import StopMatcher, TokenSource

LATENCY = LatencyModel(
    prefill_overhead=0.03, prefill_time_per_token=0.001, inter_token_latency=0.01, itl_batch_factor=0.1
)


def make(
    *,
    num_blocks: int = 64,
    block_size: int = 4,
    max_num_seqs: int = 8,
    max_num_batched_tokens: int = 1000,
    max_model_len: int = 256,
) -> Scheduler:
    return Scheduler(
        BlockManager(num_blocks, block_size),
        LATENCY,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
    )


def seq(
    seq_id: str, prompt: list[int], max_tokens: int = 4, arrival: float = 0.0, stop: tuple[str, ...] = ()
) -> Sequence:
    return Sequence(
        seq_id=seq_id,
        request_id=seq_id,
        choice=0,
        prompt=prompt,
        max_tokens=max_tokens,
        source=TokenSource(len(prompt)),
        stop=StopMatcher(stop),
        arrival=arrival,
    )


def run(
    s: Scheduler, start: float = 0.0, limit: int = 1000
) -> tuple[list[TokenOutput], float, list[StepResult]]:
    """Drive the scheduler to completion on simulated time."""
    now = start
    outputs: list[TokenOutput] = []
    results: list[StepResult] = []
    for _ in range(limit):
        if not s.has_work:
            return outputs, now, results
        plan = s.schedule(now)
        now += plan.duration
        result = s.complete_step(plan, now)
        outputs += result.outputs
        results.append(result)
    raise AssertionError("did not finish")


def test_latency_model() -> None:
    assert LATENCY.step_duration(0, 0) == 0.0
    assert LATENCY.step_duration(100, 0) == pytest.approx(0.03 + 0.1)
    assert LATENCY.step_duration(0, 1) == pytest.approx(0.01)
    assert LATENCY.step_duration(0, 11) == pytest.approx(0.01 * 2.0)
    assert LATENCY.step_duration(10, 1) == pytest.approx(0.03 + 0.01 + 0.01)


def test_ttft_is_prefill_of_uncached_tokens_and_itl_follows() -> None:
    s = make()
    s.add(seq("a", list(range(40)), max_tokens=3))
    outputs, end, results = run(s)
    assert [o.first for o in outputs] == [True, False, False]
    assert outputs[0].interval == pytest.approx(0.03 + 40 * 0.001)
    assert outputs[1].interval == pytest.approx(0.01)
    assert outputs[-1].finish_reason == "length"
    done = results[-1].finished[0]
    assert done.generation_tokens == 3
    assert done.e2e == pytest.approx(end)
    assert s.blocks.num_free_blocks == 64


def test_prefix_cache_cuts_ttft() -> None:
    s = make()
    prompt = list(range(40))
    s.add(seq("a", prompt, max_tokens=1))
    run(s)
    s.add(seq("b", [*prompt, 99], max_tokens=1))
    plan = s.schedule(0.0)
    assert plan.prefix_hits == 40
    assert plan.prefix_queries == 41
    assert plan.prefill_tokens == 1
    assert plan.duration == pytest.approx(0.03 + 0.001)
    result = s.complete_step(plan, plan.duration)
    assert result.outputs[0].first


def test_itl_grows_with_batch_size() -> None:
    def itl_with(batch: int) -> float:
        s = make()
        for i in range(batch):
            s.add(seq(f"s{i}", [1000 + i], max_tokens=3))
        s.complete_step(s.schedule(0.0), 0.0)  # prefill step
        plan = s.schedule(0.0)
        assert plan.num_decodes == batch
        return plan.duration

    assert itl_with(1) == pytest.approx(0.01)
    assert itl_with(5) == pytest.approx(0.01 * 1.4)
    assert itl_with(5) > itl_with(2)


def test_max_num_seqs_limits_admission_and_queue_is_fcfs() -> None:
    s = make(max_num_seqs=2)
    for i in range(4):
        s.add(seq(f"s{i}", [i] * 5, max_tokens=2))
    plan = s.schedule(0.0)
    assert plan.admitted == ["s0", "s1"]
    assert [q.seq_id for q in s.waiting] == ["s2", "s3"]
    _, _, results = run(s)
    finished = [f.seq_id for r in results for f in r.finished]
    assert finished == ["s0", "s1", "s2", "s3"]
    queue_times = {f.seq_id: f.queue_time for r in results for f in r.finished}
    assert queue_times["s0"] == 0.0
    assert queue_times["s2"] > 0.0


def test_token_budget_chunks_long_prefills() -> None:
    s = make(max_num_batched_tokens=16)
    s.add(seq("a", list(range(40)), max_tokens=1))
    plans = []
    while s.has_work:
        plan = s.schedule(0.0)
        plans.append(plan.prefill_tokens)
        s.complete_step(plan, 0.0)
    assert plans == [16, 16, 8]


def test_head_of_line_blocks_on_kv_and_nobody_overtakes() -> None:
    s = make(num_blocks=4, block_size=4)
    s.add(seq("big", list(range(12)), max_tokens=1))  # 3 blocks
    s.add(seq("big2", list(range(100, 112)), max_tokens=1))  # 3 more: must wait
    s.add(seq("small", [500], max_tokens=1))  # would fit, but FCFS
    plan = s.schedule(0.0)
    assert plan.admitted == ["big"]
    s.complete_step(plan, 1.0)
    assert s.schedule(1.0).admitted == ["big2", "small"]


def test_preemption_when_blocks_run_out_recomputes_newest() -> None:
    s = make(num_blocks=4, block_size=4, max_model_len=16)
    s.add(seq("old", list(range(7)), max_tokens=8))  # 2 blocks, grows to 4
    s.add(seq("new", list(range(100, 107)), max_tokens=8))
    outputs, _, results = run(s)
    by_seq: dict[str, list[TokenOutput]] = {}
    for o in outputs:
        by_seq.setdefault(o.seq_id, []).append(o)
    assert len(by_seq["old"]) == 8
    assert len(by_seq["new"]) == 8
    finished = [f.seq_id for r in results for f in r.finished]
    assert finished == ["old", "new"]
    assert s.blocks.num_free_blocks == 4


def test_preemption_is_reported_in_the_plan() -> None:
    s = make(num_blocks=4, block_size=4, max_model_len=16)
    s.add(seq("old", list(range(7)), max_tokens=8))
    s.add(seq("new", list(range(100, 107)), max_tokens=8))
    preempted: list[str] = []
    now = 0.0
    while s.has_work:
        plan = s.schedule(now)
        preempted += plan.preempted
        now += plan.duration
        s.complete_step(plan, now)
    assert preempted and set(preempted) == {"new"}


def test_stop_string_finishes_with_stop_reason() -> None:
    s = make()
    probe = TokenSource(5)
    words = [probe.next_token()[1] for _ in range(3)]
    s.add(seq("a", [1, 2, 3, 4, 5], max_tokens=10, stop=(words[2],)))
    outputs, _, _ = run(s)
    assert outputs[-1].finish_reason == "stop"
    assert outputs[-1].stop_reason == words[2]
    assert "".join(o.text for o in outputs) == words[0] + words[1]


def test_abort_frees_blocks() -> None:
    s = make()
    s.add(seq("a", list(range(10)), max_tokens=5))
    s.add(seq("b", list(range(10, 20)), max_tokens=5))
    s.complete_step(s.schedule(0.0), 0.1)
    assert s.abort("a")
    assert not s.abort("a")
    assert s.abort("b")
    assert not s.has_work
    assert s.blocks.num_free_blocks == 64


def test_abort_of_waiting_sequence_and_duplicates() -> None:
    s = make(max_num_seqs=1)
    s.add(seq("a", [1], max_tokens=2))
    s.add(seq("b", [2], max_tokens=2))
    with pytest.raises(ValueError):
        s.add(seq("a", [1]))
    with pytest.raises(ValueError):
        s.add(seq("huge", list(range(300))))
    assert s.abort("b")
    assert [q.seq_id for q in s.waiting] == ["a"]


def test_max_model_len_caps_generation() -> None:
    s = make(max_model_len=8)
    s.add(seq("a", list(range(6)), max_tokens=100))
    outputs, _, _ = run(s)
    assert len(outputs) == 2
    assert outputs[-1].finish_reason == "length"


def test_runs_are_deterministic() -> None:
    def trace() -> list[tuple[str, str, float]]:
        s = make(num_blocks=8, block_size=4, max_num_seqs=3, max_model_len=32)
        for i in range(6):
            s.add(seq(f"s{i}", [i % 2] * (5 + i), max_tokens=6, arrival=0.0))
        outputs, _, _ = run(s)
        return [(o.seq_id, o.text, round(o.interval, 9)) for o in outputs]

    assert trace() == trace()
