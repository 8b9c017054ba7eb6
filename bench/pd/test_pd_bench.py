"""Checks of the benchmark's pure parts: `.venv/bin/pytest bench/pd -q` (not in the default test paths)."""

from __future__ import annotations

from pathlib import Path

import pytest
from openloop import Outcome
from simmetrics import delta, matching, short_prompts
from stats import Objectives, percentile, summarize
from tables import render_across
from workload import LONG_TOKENS, OUTPUT_TOKENS, SHORT_TOKENS, Request, make_workload, prompt_text

from phalanx.sim.tokenizer import tokenize


def test_workload_is_fixed_by_its_seed_and_differs_between_seeds() -> None:
    assert make_workload(1.0, 300, seed=1) == make_workload(1.0, 300, seed=1)
    assert make_workload(1.0, 300, seed=1) != make_workload(1.0, 300, seed=2)


def test_workload_mix_rate_and_lengths() -> None:
    requests = make_workload(2.0, 2000, seed=7)
    assert 3800 < len(requests) < 4200  # Poisson: 4000 expected
    long = [r for r in requests if r.long]
    assert 0.18 < len(long) / len(requests) < 0.22
    for r in requests:
        span = LONG_TOKENS if r.long else SHORT_TOKENS
        assert span[0] <= r.prompt_tokens <= span[1]
        assert OUTPUT_TOKENS[0] <= r.output_tokens <= OUTPUT_TOKENS[1]
    arrivals = [r.arrival_s for r in requests]
    assert arrivals == sorted(arrivals)
    assert arrivals[0] > 0 and arrivals[-1] < 2000


def test_workload_rejects_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="positive"):
        make_workload(0, 10, seed=1)


@pytest.mark.parametrize("tokens", [256, 1000, 8192])
def test_prompt_has_exactly_its_token_count_in_the_simulators_tokenizer(tokens: int) -> None:
    request = Request(12345, 0.0, tokens, 128)
    assert len(tokenize(prompt_text(request, "abcdefgh"))) == tokens


def test_prompts_of_two_requests_share_no_first_block() -> None:
    a, b = (tokenize(prompt_text(Request(i, 0.0, 300, 128), "run1")) for i in (1, 2))
    assert a[:16] != b[:16]
    other_run = tokenize(prompt_text(Request(1, 0.0, 300, 128), "run2"))
    assert a[:16] != other_run[:16]


def _outcome(prompt: int, ttft: float | None, gaps: list[float], error: str = "") -> Outcome:
    out = Outcome(Request(0, 0.0, prompt, len(gaps) + 1), ttft_s=ttft, gaps_s=gaps, error=error)
    out.latency_s = None if error else (ttft or 0) + sum(gaps)
    out.completion_tokens = len(gaps) + 1
    return out


def test_objectives_scale_ttft_with_the_prompt_and_bound_the_requests_own_itl_p99() -> None:
    objectives = Objectives(ttft_base_s=1.0, ttft_per_token_s=0.0005, itl_p99_s=0.1)
    assert objectives.met(_outcome(500, 1.2, [0.01] * 200))  # limit 1.25 s
    assert not objectives.met(_outcome(500, 1.3, [0.01] * 200))
    assert objectives.met(_outcome(20000, 10.9, [0.01] * 200))  # limit 11 s
    # 200 gaps: p99 (nearest rank 198) is the third largest; two stalls pass, three do not.
    assert objectives.met(_outcome(500, 0.2, [0.01] * 198 + [2.0] * 2))
    assert not objectives.met(_outcome(500, 0.2, [0.01] * 197 + [2.0] * 3))
    assert not objectives.met(_outcome(500, None, [], error="http_500"))


def test_summary_counts_goodput_over_the_arrival_window_and_failures_against_it() -> None:
    outs = [_outcome(500, 0.2, [0.01] * 10) for _ in range(3)] + [_outcome(500, None, [], "abandoned")]
    summary = summarize(outs, duration_s=2.0, objectives=Objectives())
    assert summary["completed"] == 3
    assert summary["goodput_rps"] == 1.5
    assert summary["goodput_share"] == 0.75
    assert summary["errors"] == {"abandoned": 1}
    assert summary["itl_p99_ms"] == pytest.approx(10.0)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile(list(range(1, 101)), 0.99) == 99


def test_metric_deltas_find_pd_series_by_meaning_and_count_short_prompts() -> None:
    before = {"vllm:request_prompt_tokens_bucket{2000}": 1.0, "phalanx_sim_kv_leaked_blocks": 0.0}
    after = {
        "vllm:request_prompt_tokens_bucket{2000}": 4.0,
        "phalanx_sim_kv_leaked_blocks": 2.0,
        "phalanx_sim_kv_leaked_blocks_bucket{5}": 9.0,
    }
    d = delta(before, after)
    assert short_prompts(d) == 3.0
    assert matching(after, "leak") == 2.0  # histogram buckets are not summed in


def test_contender_names_layouts_and_thresholds() -> None:
    from pdcontenders import MIN_PREFILL_TOKENS, Contender

    c = Contender.parse("ours@256:2p2d")
    assert (c.router, c.layout, c.min_prefill_tokens, c.name) == ("ours", "2p2d", 256, "ours@256:2p2d")
    assert Contender.parse("ours:1p3d").min_prefill_tokens == MIN_PREFILL_TOKENS
    assert Contender.parse("sglang-router:2p2d").flavour == "sglang"
    for bad in ("vllm-router:agg4", "vllm-router@5:2p2d", "ours:3p1d", "nginx:2p2d", "ours@x:2p2d"):
        with pytest.raises(ValueError):
            Contender.parse(bad)


def test_router_argv_marks_each_engine_in_the_routers_own_syntax() -> None:
    from pdcontenders import Contender, Engine

    engines = [
        Engine("prefill", "http://127.0.0.1:1", 7001),
        Engine("decode", "http://127.0.0.1:2"),
    ]
    ours = Contender.parse("ours-sglang:1p3d").router_argv(9000, engines)
    assert "http://127.0.0.1:1?pd-role=prefill&pd-protocol=sglang&bootstrap-port=7001" in ours
    assert "http://127.0.0.1:2?pd-role=decode&pd-protocol=sglang" in ours
    sglang = Contender.parse("sglang-router:1p3d").router_argv(9000, engines)
    at = sglang.index("--prefill")
    assert sglang[at : at + 3] == ["--prefill", "http://127.0.0.1:1", "7001"]
    assert sglang[sglang.index("--decode") + 1] == "http://127.0.0.1:2"


def test_ours_before_runs_our_router_from_the_named_tree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from contenders import Unavailable
    from pdcontenders import BEFORE_SRC, Contender, Engine

    c = Contender.parse("ours-before@256:1p3d")
    assert (c.router, c.flavour, c.name) == ("ours-before", "vllm", "ours-before@256:1p3d")
    argv = c.router_argv(9000, [Engine("prefill", "http://127.0.0.1:1")])
    assert argv[1].endswith("serve_ours.py") and "http://127.0.0.1:1?pd-role=prefill&pd-protocol=vllm" in argv
    monkeypatch.setenv(BEFORE_SRC, str(tmp_path))  # no phalanx/router under it
    with pytest.raises(Unavailable, match=BEFORE_SRC):
        c.start_router(None, [])  # type: ignore[arg-type]


def _run(seed: int, agg: tuple[float, float, float], pd: tuple[float, float, float]) -> dict[str, object]:
    def figures(itl_p99: float, itl_p999: float, ttft_p50: float) -> dict[str, float]:
        return {
            "rate": 1.5,
            "goodput_share": 0.5,
            "itl_p99_ms": itl_p99,
            "itl_p999_ms": itl_p999,
            "ttft_p50_ms": ttft_p50,
        }

    return {
        "args": {"seed": seed},
        "contenders": [
            {"contender": "ours:agg4", "runs": [figures(*agg)]},
            {"contender": "ours:1p3d", "runs": [figures(*pd)]},
            {"contender": "gone:2p2d", "unavailable": "not installed"},
        ],
    }


def test_across_runs_takes_each_ratio_within_its_own_run_then_the_median() -> None:
    runs = [
        _run(1, (20, 2000, 250), (10, 200, 250)),  # 0.50x, 0.10x, 1.00x
        _run(2, (40, 1000, 200), (30, 300, 220)),  # 0.75x, 0.30x, 1.10x
        _run(3, (10, 500, 100), (9, 100, 90)),  # 0.90x, 0.20x, 0.90x
    ]
    table = render_across(runs)
    row = next(line for line in table.splitlines() if "| ours:1p3d |" in line)
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "3"
    assert cells[4] == "10 (9–30)"  # the absolute p99 in ms, for reading the noise floor
    assert cells[5] == "0.75× (0.50×–0.90×)"  # not 20/23.3 from pooled absolute figures
    assert cells[6] == "0.20× (0.10×–0.30×)"
    assert cells[7] == "1.00× (0.90×–1.10×)"
    assert "seeds 1, 2, 3" in table
    assert "gone:2p2d" not in table
