"""The benchmark's traces: seeded, with the shapes they promise, and the stored Azure slice."""

from __future__ import annotations

import pytest

from phalanx.autoscale.replay import traces
from phalanx.autoscale.replay.trace import Request, Trace
from tests.conftest import ROOT


def rate(trace: Trace, start: float, end: float) -> float:
    return sum(1 for r in trace.requests if start <= r.arrival < end) / (end - start)


def test_generators_are_seeded() -> None:
    assert traces.step() == traces.step()
    assert traces.steady(seed=5) != traces.steady(seed=6)


def test_the_step_quadruples_the_rate() -> None:
    step = traces.step(base=3.0, factor=4.0, at=300.0, duration=900.0)
    assert rate(step, 0, 300) == pytest.approx(3.0, rel=0.1)
    assert rate(step, 300, 900) == pytest.approx(12.0, rel=0.1)


def test_the_sine_swings_between_its_low_and_high() -> None:
    sine = traces.sine(low=1.0, high=24.0, period=900.0, cycles=2)
    assert sine.duration == 1800.0
    assert rate(sine, 0, 60) < 3 and rate(sine, 900, 960) < 3
    assert rate(sine, 420, 480) == pytest.approx(24.0, rel=0.1)


def test_bursts_are_silent_between_busy_stretches() -> None:
    bursts = traces.bursts(rate=3.0, idle=600.0, busy=300.0, cycles=2)
    assert rate(bursts, 0, 600) == 0 and rate(bursts, 900, 1500) == 0
    assert rate(bursts, 600, 900) == pytest.approx(3.0, rel=0.15)


def test_token_counts_follow_the_azure_trace() -> None:
    prompts = sorted(r.prompt_tokens for r in traces.steady().requests)
    outputs = sorted(r.output_tokens for r in traces.steady().requests)
    assert prompts[len(prompts) // 2] == pytest.approx(traces.PROMPT_MEDIAN, rel=0.05)
    assert outputs[len(outputs) // 2] == pytest.approx(traces.OUTPUT_MEDIAN, rel=0.05)


def test_the_stored_azure_slice() -> None:
    azure = traces.read_azure_llm(
        (ROOT / "bench" / "autoscale" / "traces" / "azure_conv_20min.csv").read_text()
    )
    assert len(azure.requests) == 8191
    assert azure.duration == 1200.0
    assert azure.requests[0] == Request(0.202, 389, 55)


def test_a_bad_line_is_named() -> None:
    with pytest.raises(ValueError, match=r"azure-conv: line 3: expected 3 fields, got '1\.5,10'"):
        traces.read_azure_llm("seconds,context_tokens,generated_tokens\n0.1,10,2\n1.5,10\n")


def test_a_trace_must_be_in_order() -> None:
    with pytest.raises(ValueError, match="sorted by arrival"):
        Trace("x", (Request(2.0, 1, 1), Request(1.0, 1, 1)), 10.0)
