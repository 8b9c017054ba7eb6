"""The benchmark's clones of HPA, KEDA and KPA against decisions computed by hand from their
documented rules and defaults."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from phalanx.autoscale.types import Signals, UnitSignals
from tests.conftest import ROOT


def _load(name: str) -> ModuleType:
    path: Path = ROOT / "bench" / "autoscale" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_autoscale_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


clones = _load("clones")


def signals(*inflight: float, waiting: tuple[float, ...] = (), pending: int = 0, held: int = 0) -> Signals:
    """Ready units with the given requests in flight (and engine queues), plus pending ones."""
    ready = [
        UnitSignals(
            name=f"u{i}",
            ready=True,
            inflight=value,
            waiting=waiting[i] if i < len(waiting) else 0.0,
            queue=0.0,
        )
        for i, value in enumerate(inflight)
    ]
    starting = [UnitSignals(name=f"p{i}", ready=False, pending_since=0.0) for i in range(pending)]
    return Signals(units=(*ready, *starting), admission_queue=held)


# --- HPA ---------------------------------------------------------------------------------------


def hpa() -> object:
    return clones.HPA(metric=clones.inflight, target=10.0)


def test_hpa_ratio_rule() -> None:
    # Average 22 against 10: ratio 2.2, ceil(2.2 x 2) = 5 (within the +4 pods / +100% limit of 6).
    assert hpa().decide(signals(20, 24), 0.0) == 5


def test_hpa_tolerance_keeps_the_count() -> None:
    assert hpa().decide(signals(10, 11), 0.0) == 2  # ratio 1.05


def test_hpa_counts_pods_without_metrics_as_zero_when_scaling_up() -> None:
    # Ratio 2.0 over the two ready pods; with the pending one at 0: 40 / 3 / 10 = 1.33, ceil(4.0) = 4.
    assert hpa().decide(signals(20, 20, pending=1), 0.0) == 4


def test_hpa_counts_pods_without_metrics_as_the_target_when_scaling_down() -> None:
    # Ratio 0.2 over the ready pod; the pending one at 10: 12 / 2 / 10 = 0.6, ceil(1.2) = 2: no change.
    assert hpa().decide(signals(2, pending=1), 0.0) == 2


def test_hpa_scale_up_is_limited_to_four_pods_or_double_per_15_seconds() -> None:
    scaler = hpa()
    assert scaler.decide(signals(100), 0.0) == 5  # wants 10; max(1 + 4, 1 x 2) = 5
    # 15 s later the +4 at 0 s is outside the period: max(5 + 4, 5 x 2) = 10.
    assert scaler.decide(signals(*[20] * 5), 15.0) == 10


def test_hpa_scale_down_waits_for_the_300_second_window() -> None:
    scaler = hpa()
    assert scaler.decide(signals(*[10] * 5), 0.0) == 5
    for now in range(15, 300, 15):
        assert scaler.decide(signals(*[2] * 5), float(now)) == 5  # the 5 at 0 s is in the window
    assert scaler.decide(signals(*[2] * 5), 300.0) == 1  # ceil(0.2 x 5); 100% per 15 s allows it


def test_hpa_does_nothing_at_zero_or_without_metrics() -> None:
    assert hpa().decide(Signals(units=(), admission_queue=50), 0.0) == 0
    assert hpa().decide(signals(pending=2), 0.0) == 2


# --- KEDA --------------------------------------------------------------------------------------


def test_keda_hpa_on_total_waiting() -> None:
    keda = clones.KEDA(threshold=2.0, min_replica_count=1)
    # 7 waiting on one replica: 7 / 2 = 3.5 outside tolerance, ceil = 4 (limit 5).
    assert keda.decide(signals(20, waiting=(7,)), 0.0) == 4


def test_keda_cannot_wake_up_on_an_engine_metric_at_zero() -> None:
    keda = clones.KEDA(threshold=2.0)
    assert keda.decide(Signals(units=(), admission_queue=100), 0.0) == 0  # no engine, no metric


def test_keda_goes_to_zero_after_the_cooldown_only_with_min_replica_count_0() -> None:
    keda = clones.KEDA(threshold=2.0)
    assert keda.decide(signals(20, waiting=(2,)), 0.0) == 1  # active at 0 s
    decisions = {now: keda.decide(signals(3), float(now)) for now in range(15, 316, 15)}
    assert decisions[285] == 1
    assert decisions[300] == 0  # KEDA's poll at 300 s: idle since 0 s for the 300 s cooldown
    floor = clones.KEDA(threshold=2.0, min_replica_count=1)
    assert [floor.decide(signals(3), float(now)) for now in range(0, 601, 15)][-1] == 1


# --- KPA ---------------------------------------------------------------------------------------


def test_kpa_stable_mode_divides_the_window_average_by_the_target() -> None:
    kpa = clones.KPA(target=10.0)
    for now in range(0, 60, 2):
        desired = kpa.decide(signals(10, 10, 5), float(now))
    assert desired == 3  # ceil(25 / 10), no panic: 3 / 3 < 2
    assert kpa.panic_since is None


def test_kpa_counts_requests_held_in_front_of_the_engines() -> None:
    kpa = clones.KPA(target=10.0)
    assert kpa.decide(Signals(units=(), admission_queue=5), 0.0) == 1  # from zero: ceil(0.5)


def test_kpa_panics_at_twice_the_ready_pods_and_never_scales_down_in_panic() -> None:
    kpa = clones.KPA(target=10.0)
    assert kpa.decide(signals(30), 0.0) == 3  # panic: 3 / 1 >= 2
    assert kpa.panic_since == 0.0
    # Load gone, but within 60 s of the last panic reading: hold 3.
    assert kpa.decide(signals(0, 0, 0), 30.0) == 3
    # The stable window without a panic reading has passed: leave panic, at most halve (3 -> 1).
    for now in range(32, 62, 2):
        assert kpa.decide(signals(0, 0, 0), float(now)) == 3
    assert kpa.decide(signals(0, 0, 0), 62.0) == 1
    assert kpa.panic_since is None


def test_kpa_scale_down_is_at_most_halving() -> None:
    kpa = clones.KPA(target=10.0)
    assert kpa.decide(signals(*[0] * 10), 0.0) == 5  # floor(10 / 2)


def test_aibrix_kpa_tolerance_and_cooldown() -> None:
    # AIBrix compares the observed total with the target +- 10%, so the band only holds near one pod.
    assert clones.KPA.aibrix(10.0).decide(signals(10.5), 0.0) == 1
    assert clones.KPA.aibrix(10.0).decide(signals(10, 10, 10.5), 0.0) == 4  # ceil(30.5 / 10)
    kpa = clones.KPA.aibrix(10.0)
    assert kpa.decide(signals(10, 10, 10, 10), 0.0) == 4
    # Scaling down keeps the lowest recommendation of the 300 s cooldown window (its controller's rule).
    assert kpa.decide(signals(5, 5, 5, 5), 10.0) == 3  # ceil(avg(40, 20) / 10)
    assert kpa.decide(signals(0, 0, 0, 0), 20.0) == 2  # ceil(avg(40, 20, 0) / 10)
    # ceil(avg(40, 20, 0, 35) / 10) = 3, but the window's lowest, 2, is what it asks for.
    assert kpa.decide(signals(5, 10, 10, 10), 30.0) == 2
    # Scale-up is at most x2 of the replica count: wants ceil(100 / 10) = 10, gets 6.
    assert clones.KPA.aibrix(10.0).decide(signals(40, 30, 30), 0.0) == 6
