from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from phalanx.router.backends import BackendLoad, parse_load
from phalanx.router.backends.load import gauge_samples
from phalanx.sim.metrics import SimMetrics

from .pages import CRAFTED, CRAFTED_LOAD, reference_load, vllm_page


def test_crafted_vllm_page() -> None:
    load = parse_load(CRAFTED)
    assert load.waiting == CRAFTED_LOAD.waiting
    assert load.running == CRAFTED_LOAD.running
    assert load.kv_cache_usage == pytest.approx(CRAFTED_LOAD.kv_cache_usage)


def test_vllm_page_sums_engines_and_agrees_with_the_full_parser() -> None:
    page = vllm_page(engines=((3, 2, 0.25), (1, 4, 0.75), (0, 0, 0.5)))
    assert page.count("\n") > 800  # the size and mix of a real page
    load = parse_load(page)
    assert load == BackendLoad(waiting=4.0, running=6.0, kv_cache_usage=0.5)
    assert load == reference_load(page)


def test_the_old_kv_name_is_read_when_the_new_one_is_absent() -> None:
    page = vllm_page(engines=((0, 1, 0.125),), old_kv_name=True)
    assert "vllm:kv_cache_usage_perc" not in page
    assert parse_load(page) == BackendLoad(waiting=0.0, running=1.0, kv_cache_usage=0.125)


@pytest.mark.parametrize("new_first", [True, False])
def test_the_new_kv_name_wins_wherever_it_stands(new_first: bool) -> None:
    new = "vllm:kv_cache_usage_perc 0.25\n"
    old = "vllm:gpu_cache_usage_perc 0.75\n"
    page = new + old if new_first else old + new
    assert parse_load(page).kv_cache_usage == 0.25


def test_absent_gauges_are_none() -> None:
    assert parse_load("") == BackendLoad()
    assert parse_load("# HELP vllm:num_requests_waiting x\n# TYPE vllm:num_requests_waiting gauge\n") == (
        BackendLoad()
    )
    assert parse_load("<html>not metrics</html>") == BackendLoad()


def test_non_finite_samples_are_skipped_and_all_of_them_is_none() -> None:
    page = (
        'vllm:num_requests_waiting{engine="0"} NaN\n'
        'vllm:num_requests_waiting{engine="1"} +Inf\n'
        'vllm:num_requests_running{engine="0"} -Inf\n'
        'vllm:num_requests_running{engine="1"} 2\n'
        "vllm:kv_cache_usage_perc nan\n"
        "vllm:gpu_cache_usage_perc 0.5\n"
    )
    # No finite new-name sample: the old name is the fallback.
    assert parse_load(page) == BackendLoad(waiting=None, running=2.0, kv_cache_usage=0.5)


def test_a_sample_on_the_first_line_and_no_final_newline() -> None:
    assert parse_load("vllm:num_requests_waiting 7") == BackendLoad(waiting=7.0)
    assert parse_load('vllm:num_requests_running{a="b"} 1e3') == BackendLoad(running=1000.0)


def test_only_sample_lines_of_exactly_that_name_count() -> None:
    page = (
        "# HELP vllm:num_requests_waiting vllm:num_requests_waiting 5\n"
        'x{l="vllm:num_requests_waiting 6"} 1\n'
        "xvllm:num_requests_waiting 7\n"
        "vllm:num_requests_waiting_by_reason 8\n"
        "vllm:num_requests_waiting2 9\n"
        "vllm:num_requests_waiting{} 10 1712345678\n"
    )
    assert gauge_samples(page, "vllm:num_requests_waiting") == [10.0]


def test_labels_may_hold_braces_commas_quotes_and_newlines() -> None:
    page = 'vllm:num_requests_running{a="}", b="x,y=\\"z\\"", c="\\\\", d="\\n{"} 4\n'
    assert gauge_samples(page, "vllm:num_requests_running") == [4.0]
    # An unterminated label set is not a sample.
    assert gauge_samples('vllm:num_requests_running{a="} 4\n', "vllm:num_requests_running") == []


def test_unparsable_values_are_skipped_but_the_group_goes_on() -> None:
    page = 'vllm:num_requests_waiting{e="0"} many\nvllm:num_requests_waiting{e="1"} 2\n'
    assert parse_load(page).waiting == 2.0


def test_comments_and_blank_lines_inside_a_group_are_skipped() -> None:
    page = (
        'vllm:num_requests_waiting{e="0"} 1\n'
        "\n"
        "# a comment between samples\n"
        '   vllm:num_requests_waiting{e="1"} 2\r\n'
        "\r\n"
        'vllm:num_requests_waiting{e="2"} 4\n'
        "# TYPE other gauge\n"
        "other 1\n"
    )
    assert parse_load(page).waiting == 7.0


def test_reading_stops_at_the_end_of_the_family() -> None:
    # Both exposition formats keep a family's samples together; a second group of the same name
    # (not valid) is not looked for.
    page = "vllm:num_requests_waiting 1\nother 1\nvllm:num_requests_waiting 2\n"
    assert parse_load(page).waiting == 1.0


def test_kv_usage_is_the_mean_across_engines_within_0_and_1() -> None:
    page = 'vllm:kv_cache_usage_perc{engine="0"} 0.5\nvllm:kv_cache_usage_perc{engine="1"} 1.0\n'
    assert parse_load(page).kv_cache_usage == 0.75
    # Some mocks report 0..100: the reading is clamped rather than trusted.
    assert parse_load("vllm:kv_cache_usage_perc 85\n").kv_cache_usage == 1.0
    assert parse_load("vllm:kv_cache_usage_perc -0.5\n").kv_cache_usage == 0.0


def test_the_simulators_own_page() -> None:
    metrics = SimMetrics("tiny", max_model_len=512, block_size=16, num_gpu_blocks=64)
    labels = {"model_name": "tiny", "engine": "0"}
    assert parse_load(metrics.render().decode()) == BackendLoad(0.0, 0.0, 0.0)
    metrics.waiting.labels(**labels).set(3)
    metrics.running.labels(**labels).set(2)
    metrics.kv_usage.labels(**labels).set(0.375)
    metrics.ttft.labels(**labels).observe(0.2)
    page = metrics.render().decode()
    assert parse_load(page) == BackendLoad(waiting=3.0, running=2.0, kv_cache_usage=0.375)
    assert parse_load(page) == reference_load(page)


def test_openmetrics_text_reads_the_same() -> None:
    # Written by hand: prometheus_client 0.26's OpenMetrics writer turns the `:` of sample names
    # into `_` (client_python#1177), which is why the scraper asks for the classic text format.
    page = (
        "# HELP vllm:num_requests_waiting w\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0"} 2.0\n'
        'vllm:num_requests_waiting{engine="1"} 5.0 1712345678.5\n'
        "# EOF\n"
    )
    assert parse_load(page).waiting == 7.0


_label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    samples=st.lists(
        st.tuples(_label_text, st.floats(allow_nan=True, allow_infinity=True)), min_size=0, max_size=5
    ),
    kv=st.lists(st.floats(min_value=0, max_value=1), max_size=3),
)
def test_any_label_values_agree_with_the_full_parser(
    samples: list[tuple[str, float]], kv: list[float]
) -> None:
    reg = CollectorRegistry()
    waiting = Gauge("vllm:num_requests_waiting", "w", ["engine", "tag"], registry=reg)
    # A decoy whose label values and name prefix look like the real thing.
    decoy = Gauge("vllm:num_requests_waiting_by_reason", "d", ["reason"], registry=reg)
    usage = Gauge("vllm:kv_cache_usage_perc", "k", ["engine"], registry=reg)
    for i, (tag, value) in enumerate(samples):
        waiting.labels(str(i), tag).set(value)
        decoy.labels(f"{tag}\nvllm:num_requests_waiting {i}").set(i)
    for i, value in enumerate(kv):
        usage.labels(str(i)).set(value)
    page = generate_latest(reg).decode()
    got, want = parse_load(page), reference_load(page)
    assert got.waiting == want.waiting
    finite = [v for _, v in samples if math.isfinite(v)]
    assert got.waiting == (sum(finite) if finite else None)
    assert got.kv_cache_usage == pytest.approx(want.kv_cache_usage)
