"""An entry pod's page into the unit's fields: gauges as read, p95 and tokens/s from the window
since the previous page, restarts voiding the window, unknown as None. Pages in vLLM's and SGLang's
real names and label sets (tests/unit/autoscale/observe_pages.py)."""

from __future__ import annotations

import functools
import json

import pytest

from phalanx.autoscale.observe.engine import UNKNOWN, EngineMetricNames, UnitFields, observe_unit
from phalanx.autoscale.observe.snapshot import PageSnapshot
from tests.unit.autoscale.observe_pages import sglang_page, vllm_page

# Lifetime: 100 fast first tokens. Window: 20 more, all in (0.5, 1.0].
PAGE_1 = vllm_page(waiting=3, running=8, kv=0.42, prompt=1000, generation=500, ttft=(90, 10, 0, 0, 0, 0))
PAGE_2 = vllm_page(
    waiting=5,
    running=9,
    kv=0.5,
    prompt=1600,
    generation=1400,
    ttft=(90, 10, 0, 20, 0, 0),
    itl=(50, 40, 10, 0, 0),
)


def two_pages(first: str, second: str, gap: float = 15.0) -> tuple[UnitFields, PageSnapshot | None]:
    _, snapshot = observe_unit(first, None, 100.0)
    return observe_unit(second, snapshot, 100.0 + gap)


def test_the_first_page_gives_the_gauges_and_nothing_that_needs_a_window() -> None:
    fields, snapshot = observe_unit(PAGE_1, None, 100.0)
    assert fields == UnitFields(waiting=3, running=8, kv_usage=0.42)
    assert snapshot is not None and snapshot.time == 100.0
    # Only counters and buckets are kept: gauges need no window.
    assert snapshot.series['vllm:prompt_tokens_total{engine="0",model_name="m"}'] == 1000
    bucket = 'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.25",model_name="m"}'
    assert snapshot.series[bucket] == 100
    assert not any("num_requests" in key or "kv_cache" in key for key in snapshot.series)


def test_the_second_page_measures_the_window_only() -> None:
    fields, _ = two_pages(PAGE_1, PAGE_2)
    assert (fields.waiting, fields.running, fields.kv_usage) == (5, 9, 0.5)
    # (600 prompt + 900 generation tokens) / 15 s.
    assert fields.tokens_per_second == pytest.approx(100.0)
    assert fields.prompt_tokens_per_second == pytest.approx(40.0)  # 600 / 15 s
    # Window: 20 observations in (0.5, 1.0]; rank 19 -> 0.5 + 0.5 * 19/20. The lifetime p95 would
    # be 0.85 (rank 114 of 120), and the old fast requests must not hide the slow window.
    assert fields.ttft_p95 == pytest.approx(0.975)
    # Window ITL: 50 <= 0.01, 40 in (0.01, 0.025], 10 in (0.025, 0.05]; rank 95 -> 0.025 + 0.025 * 5/10.
    assert fields.itl_p95 == pytest.approx(0.0375)
    assert fields.prefill_queued_tokens is None  # no engine exports it


def test_a_quiet_window_has_a_rate_of_zero_and_no_percentile() -> None:
    fields, _ = two_pages(PAGE_1, PAGE_1)
    assert fields.tokens_per_second == 0.0  # nothing served is a known zero
    assert fields.ttft_p95 is None and fields.itl_p95 is None  # no request: no latency to report


def test_a_restart_voids_the_window_and_starts_a_new_one() -> None:
    restarted = vllm_page(waiting=1, running=2, kv=0.1, prompt=50, generation=20, ttft=(3, 0, 0, 0, 0, 0))
    fields, snapshot = two_pages(PAGE_2, restarted)
    assert fields == UnitFields(waiting=1, running=2, kv_usage=0.1)  # no negative rate, no garbage p95
    later = vllm_page(prompt=350, generation=320, ttft=(3, 0, 4, 0, 0, 0))
    fields, _ = observe_unit(later, snapshot, 130.0)
    assert fields.tokens_per_second == pytest.approx(40.0)  # (300 + 300) / 15 s since the restart
    assert fields.ttft_p95 == pytest.approx(0.25 + 0.25 * 3.8 / 4)


def test_a_histogram_that_went_down_alone_is_a_restart_too() -> None:
    fewer = vllm_page(prompt=1600, generation=1400, ttft=(50, 0, 0, 0, 0, 0))
    fields, _ = two_pages(PAGE_1, fewer)
    assert (fields.tokens_per_second, fields.ttft_p95) == (None, None)


def test_a_series_that_vanished_is_a_restart() -> None:
    # Engine "0" is gone and engine "1" appeared: its counts are not growth since the last page.
    other = vllm_page(prompt=1600, generation=1400, engines=("1",))
    fields, _ = two_pages(PAGE_1, other)
    assert fields.tokens_per_second is None


def test_a_series_that_appeared_counts_from_zero() -> None:
    # SGLang creates the is_streaming="true" series at the first streaming request.
    first = sglang_page(prompt={"false": 100}, generation={"false": 10})
    second = sglang_page(prompt={"false": 100, "true": 30}, generation={"false": 10, "true": 30})
    fields, _ = two_pages(first, second, gap=10.0)
    assert fields.tokens_per_second == pytest.approx(6.0)


@pytest.mark.parametrize("gap", [0.0, -5.0])
def test_no_window_when_time_did_not_advance(gap: float) -> None:
    fields, snapshot = two_pages(PAGE_1, PAGE_2, gap=gap)
    assert fields == UnitFields(waiting=5, running=9, kv_usage=0.5)
    assert snapshot is not None and snapshot.time == 100.0 + gap


@pytest.mark.parametrize(
    "page",
    [
        "",
        "<html><body>502 Bad Gateway</body></html>",
        'vllm:num_requests_running{model_name="a} 1\n',
        "x y z",
        "process_cpu_seconds_total 12.5\n",  # a page, but not an engine's
    ],
)
def test_an_unreadable_page_is_unknown_and_keeps_the_window_start(page: str) -> None:
    _, snapshot = observe_unit(PAGE_1, None, 100.0)
    fields, kept = observe_unit(page, snapshot, 115.0)
    assert fields == UNKNOWN
    assert kept == snapshot
    # The next good page measures from the last good one: 30 s, not 15.
    fields, _ = observe_unit(PAGE_2, kept, 130.0)
    assert fields.tokens_per_second == pytest.approx(50.0)


def test_an_empty_page_of_another_program_is_all_unknown() -> None:
    fields, snapshot = observe_unit("process_cpu_seconds_total 12.5\n", None, 1.0)
    assert fields == UNKNOWN
    fields, _ = observe_unit("process_cpu_seconds_total 13.5\n", snapshot, 16.0)
    assert fields == UNKNOWN  # no counters: no rate, never a rate of 0


def test_missing_metrics_are_none_and_the_others_still_read() -> None:
    gauges_only = "vllm:num_requests_waiting 4\nvllm:num_requests_running NaN\n"
    fields, snapshot = observe_unit(gauges_only, None, 0.0)
    assert fields == UnitFields(waiting=4)  # NaN is no reading
    # A generation counter without a prompt counter is half the tokens: no rate rather than half.
    fields, _ = observe_unit("vllm:generation_tokens_total 10\n", snapshot, 15.0)
    assert fields.tokens_per_second is None


def test_negative_gauges_read_as_zero() -> None:
    fields, _ = observe_unit("vllm:num_requests_waiting -2\nvllm:num_requests_running 1\n", None, 0.0)
    assert (fields.waiting, fields.running) == (0, 1)


def test_data_parallel_engines_add_up_and_share_the_kv_mean() -> None:
    pages = [vllm_page(waiting=w, running=4, kv=0.3, prompt=p, generation=p, ttft=t, engines=("0", "1"))
             for w, p, t in ((1, 100, (0, 0, 0, 0, 0, 0)), (2, 400, (10, 0, 10, 0, 0, 0)))]  # fmt: skip
    fields, _ = two_pages(*pages, gap=10.0)
    assert (fields.waiting, fields.running, fields.kv_usage) == (4, 8, pytest.approx(0.3))
    assert fields.tokens_per_second == pytest.approx(2 * (300 + 300) / 10)
    # Both engines' buckets merged: 20 <= 0.1, 20 in (0.25, 0.5]; rank 38 -> 0.25 + 0.25 * 18/20.
    assert fields.ttft_p95 == pytest.approx(0.4749999)


def test_vllm_s_earlier_names() -> None:
    old = {"kv_name": "vllm:gpu_cache_usage_perc", "itl_name": "vllm:time_per_output_token_seconds"}
    fields, _ = two_pages(vllm_page(kv=0.7, **old), vllm_page(kv=0.7, itl=(0, 0, 0, 10, 0), **old))
    assert fields.kv_usage == 0.7
    assert fields.itl_p95 == pytest.approx(0.05 + 0.05 * 9.5 / 10)


def test_sglang_reads_the_totals_not_the_per_priority_series() -> None:
    page = functools.partial(
        sglang_page, queue=(3, 4), running=(1, 2), token_usage=(0.2, 0.4), by_priority={"1": 5, "2": 2}
    )
    idle = (0, 0, 0, 0, 0, 0)
    first = page(
        prompt={"true": 100, "false": 0},
        generation={"true": 10, "false": 0},
        ttft={"true": idle, "false": idle},
    )
    second = page(
        prompt={"true": 400, "false": 200},
        generation={"true": 210, "false": 100},
        ttft={"true": (10, 0, 0, 0, 0, 0), "false": (0, 0, 0, 0, 0, 10)},
        itl=(100, 0, 0, 0, 0),
    )
    fields, _ = two_pages(first, second, gap=20.0)
    # 3 + 4 over both dp ranks; the priority breakdown (5 + 2, rank 0's own) is not added again.
    assert (fields.waiting, fields.running) == (7, 3)
    assert fields.kv_usage == pytest.approx(0.3)
    assert fields.tokens_per_second == pytest.approx((500 + 300) / 20)
    # Streaming and non-streaming merged: 10 <= 0.1 and 10 above 2.5: rank 19 is in +Inf -> 2.5.
    assert fields.ttft_p95 == 2.5
    assert fields.itl_p95 == pytest.approx(0.0095)


def test_a_named_prefill_queue_gauge_is_read() -> None:
    names = EngineMetricNames(prefill_queued_tokens=("example:prefill_queued_tokens",))
    fields, _ = observe_unit("example:prefill_queued_tokens 4096\n", None, 0.0, names)
    assert fields.prefill_queued_tokens == 4096


def test_another_quantile() -> None:
    _, snapshot = observe_unit(PAGE_1, None, 100.0)
    fields, _ = observe_unit(PAGE_2, snapshot, 115.0, quantile=0.5)
    assert fields.ttft_p95 == pytest.approx(0.75)  # rank 10 of the window's 20


def test_the_snapshot_survives_json() -> None:
    _, snapshot = observe_unit(PAGE_1, None, 100.0)
    assert snapshot is not None
    restored = PageSnapshot.from_json(json.loads(json.dumps(snapshot.to_json())))
    assert restored == snapshot
    assert observe_unit(PAGE_2, restored, 115.0)[0] == two_pages(PAGE_1, PAGE_2)[0]


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "snapshot",
        {"time": "now", "series": {}},
        {"time": True, "series": {}},
        {"time": float("nan"), "series": {}},
        {"time": 1.0},
        {"time": 1.0, "series": []},
        {"time": 1.0, "series": {"a": "1"}},
        {"time": 1.0, "series": {"a": float("inf")}},
        {"time": 1.0, "series": {"a": None}},
    ],
)
def test_a_damaged_snapshot_is_no_snapshot(data: object) -> None:
    assert PageSnapshot.from_json(data) is None
    # ...which costs one window and is never read as zeros.
    assert observe_unit(PAGE_2, None, 115.0)[0].tokens_per_second is None


def test_integer_times_and_values_are_accepted() -> None:
    assert PageSnapshot.from_json({"time": 3, "series": {"a": 2}}) == PageSnapshot(3.0, {"a": 2.0})


def inference_time(total: float, count: float, engines: tuple[str, ...] = ("0",)) -> str:
    """vLLM's vllm:request_inference_time_seconds, its `_sum` and `_count` per engine (buckets
    are not read)."""
    name = "vllm:request_inference_time_seconds"
    lines = [f"# HELP {name} Time in the RUNNING phase.", f"# TYPE {name} histogram"]
    for engine in engines:
        labels = f'engine="{engine}",model_name="m"'
        lines += [f'{name}_bucket{{{labels},le="+Inf"}} {count}', f"{name}_count{{{labels}}} {count}"]
        lines.append(f"{name}_sum{{{labels}}} {total}")
    return "\n".join(lines) + "\n"


def test_request_seconds_is_the_window_s_mean_time_in_the_batch() -> None:
    # Lifetime: 100 requests of 1 s. Window: 10 more, 40 s in all: 4 s each, not the lifetime's 1.36 s.
    fields, snapshot = two_pages(PAGE_1 + inference_time(100.0, 100), PAGE_2 + inference_time(140.0, 110))
    assert fields.request_seconds == pytest.approx(4.0)
    assert snapshot is not None
    assert snapshot.series['vllm:request_inference_time_seconds_count{engine="0",model_name="m"}'] == 110


def test_request_seconds_is_unknown_without_a_window_a_finished_request_or_the_histogram() -> None:
    assert observe_unit(PAGE_1 + inference_time(10.0, 5), None, 1.0)[0].request_seconds is None
    assert (
        two_pages(PAGE_1 + inference_time(10.0, 5), PAGE_2 + inference_time(10.0, 5))[0].request_seconds
        is None
    )
    assert two_pages(PAGE_1, PAGE_2)[0].request_seconds is None  # SGLang, older vLLM: no histogram
    sglang = two_pages(sglang_page(), sglang_page())[0]
    assert sglang.request_seconds is None


def test_request_seconds_adds_up_data_parallel_engines() -> None:
    # Each of two engines: 4 requests in 6 s in the window -> 12 s over 8 requests.
    first = PAGE_1 + inference_time(1.0, 1, engines=("0", "1"))
    second = PAGE_2 + inference_time(7.0, 5, engines=("0", "1"))
    assert two_pages(first, second)[0].request_seconds == pytest.approx(1.5)


def test_a_restart_voids_request_seconds() -> None:
    fields, _ = two_pages(PAGE_1 + inference_time(100.0, 100), PAGE_2 + inference_time(3.0, 1))
    assert fields.request_seconds is None
