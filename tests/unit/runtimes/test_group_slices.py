"""A role's slices (instance k of the role in every group, scaled as one) and what the core reads
of them: the instances' engine fields and the router's figures per group."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from phalanx.autoscale.observe.assemble import UnitState
from phalanx.autoscale.observe.engine import UnitFields
from phalanx.autoscale.observe.router import RouterFigures
from phalanx.autoscale.policy_pass import role_signals
from phalanx.controller.observed import DRAIN_REASON_ANNOTATION, DRAINING_ANNOTATION
from phalanx.router.pods import endpoint_from_pod
from phalanx.runtimes.group_units import (
    GroupUnit,
    Slice,
    group_units,
    slice_fields,
    slice_router,
    slices,
    target_units,
)
from tests.unit.runtimes.test_group_units import CREATED, EPOCH, pod

LATER = "2026-12-07T00:00:20Z"  # EPOCH + 20
DRAINED = {DRAINING_ANNOTATION: CREATED}


def decode(pods: list[dict[str, Any]]) -> list[GroupUnit]:
    return group_units(pods, "pd", endpoint_from_pod, "decode")


def cut(pods: list[dict[str, Any]], groups: list[int], declared: int = 0) -> list[Slice]:
    return slices(decode(pods), groups, serving="pd", role="decode", declared=declared, now=EPOCH + 30)


def d(group: int, index: int, **kw: Any) -> dict[str, Any]:
    return pod(group, **{"serving": "pd", "role": "decode", "role_index": index, **kw})


def test_instance_k_of_every_group_is_one_slice_named_after_its_index() -> None:
    found = cut([d(0, 0), d(0, 1), d(1, 0), d(1, 1), d(0, 0, serving="other")], [0, 1])
    assert [(s.state.name, s.members, s.state.ready, s.placed) for s in found] == [
        ("pd-decode-0", ("pd-0-decode-0", "pd-1-decode-0"), True, True),
        ("pd-decode-1", ("pd-0-decode-1", "pd-1-decode-1"), True, True),
    ]


def test_a_slice_with_one_instance_not_ready_is_starting_since_that_instance_was_created() -> None:
    found = cut([d(0, 0), d(1, 0, ready=False, created=LATER, scheduled=False)], [0, 1])
    assert found[0].state == UnitState("pd-decode-0", ready=False, pending_since=EPOCH + 20)
    assert found[0].placed is False


def test_a_group_not_created_yet_leaves_every_slice_starting_since_now_and_unplaced() -> None:
    (one,) = cut([d(0, 0)], [0, 1])
    assert (one.state.ready, one.state.pending_since, one.placed) == (False, EPOCH + 30, False)
    assert one.members == ("pd-0-decode-0",)


def test_instances_drained_at_other_indices_in_each_group_still_pair_up() -> None:
    # A role scale-down drains a not-ready instance first, so group 0 drains 1 and group 1 drains 0.
    pods = [d(0, 0), d(0, 1, annotations=DRAINED), d(1, 0, annotations=DRAINED), d(1, 1)]
    found = cut(pods, [0, 1])
    assert [(s.state.name, s.members, s.state.draining) for s in found] == [
        ("pd-decode-0", ("pd-0-decode-0", "pd-1-decode-1"), False),
        ("pd-decode-0-draining", ("pd-0-decode-1", "pd-1-decode-0"), True),
    ]
    assert found[0].state.ready


def test_instances_of_a_group_that_is_leaving_are_left_out() -> None:
    found = cut([d(0, 0), d(1, 0, annotations=DRAINED), d(2, 0)], [0, 2])
    assert [s.members for s in found] == [("pd-0-decode-0", "pd-2-decode-0")]


def test_slices_the_spec_asks_for_and_nobody_created_yet_are_starting_at_the_lowest_free_index() -> None:
    found = cut([d(0, 1), d(1, 1), d(0, 0, annotations=DRAINED)], [0, 1], declared=3)
    assert [(s.state.name, s.state.ready, s.placed) for s in found] == [
        ("pd-decode-1", True, True),
        ("pd-decode-0-draining", False, True),
        ("pd-decode-2", False, False),  # 0 is still taken by the leaving instance
        ("pd-decode-3", False, False),
    ]
    assert found[2].state.pending_since == EPOCH + 30
    assert len(cut([d(0, 0), d(1, 0)], [0, 1], declared=0)) == 1  # a scale-down: the instances count


def test_one_group_gives_one_slice_per_instance() -> None:
    found = cut([d(0, 0), d(0, 1, ready=False)], [0])
    assert [(s.state.name, s.members, s.state.ready) for s in found] == [
        ("pd-decode-0", ("pd-0-decode-0",), True),
        ("pd-decode-1", ("pd-0-decode-1",), False),
    ]


def test_a_slice_s_startup_is_its_slowest_instance_s_and_its_batch_the_smallest() -> None:
    fast = GroupUnit(UnitState("pd-0-decode-0", True, startup_seconds=30.0, max_running=64), group=0)
    slow = GroupUnit(UnitState("pd-1-decode-0", True, startup_seconds=90.0, max_running=256), group=1)
    (one,) = slices([fast, slow], [0, 1], serving="pd", role="decode")
    assert (one.state.startup_seconds, one.state.max_running) == (90.0, 64)


@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=5, unique_by=lambda x: x[0]),
        min_size=1,
        max_size=4,
    )
)
def test_every_instance_of_a_staying_group_is_in_exactly_one_slice_at_most_once_per_group(
    groups: list[list[tuple[int, bool]]],
) -> None:
    units = [
        GroupUnit(UnitState(f"pd-{g}-decode-{i}", ready=True, draining=gone), group=g, index=i)
        for g, instances in enumerate(groups)
        for i, gone in instances
    ]
    found = slices(units, range(len(groups)), serving="pd", role="decode")
    members = [m for s in found for m in s.members]
    assert sorted(members) == sorted(u.state.name for u in units)
    assert len({s.state.name for s in found}) == len(found)
    for one in found:
        assert len({m.split("-")[1] for m in one.members}) == len(one.members)
        assert one.state.ready == (len(one.members) == len(groups))  # every instance here is ready
    live = max(sum(1 for _, gone in g if not gone) for g in groups)
    assert sum(1 for s in found if not s.state.draining) == live


def test_a_slice_s_engine_fields_are_its_instances_means_and_worst_p95() -> None:
    (one,) = cut([d(0, 0), d(1, 0)], [0, 1])
    engines = {
        "pd-0-decode-0": UnitFields(waiting=4, running=10, kv_usage=0.8, itl_p95=0.05, tokens_per_second=100),
        "pd-1-decode-0": UnitFields(waiting=2, running=6, kv_usage=0.4, itl_p95=0.09, ttft_p95=1.5),
    }
    fields = slice_fields([one], engines)["pd-decode-0"]
    assert (fields.waiting, fields.running, fields.itl_p95, fields.ttft_p95) == (3, 8, 0.09, 1.5)
    assert fields.kv_usage is not None and abs(fields.kv_usage - 0.6) < 1e-9
    assert fields.tokens_per_second == 100  # the instance that knows it; the other's is unknown
    assert fields.request_seconds is None
    assert slice_fields([one], {})["pd-decode-0"] == UnitFields()


def test_the_routers_figures_are_per_group_and_a_held_request_still_asks_for_a_slice() -> None:
    found = cut([d(0, 0), d(1, 0), d(0, 1)], [0, 1])
    router = RouterFigures(
        inflight={"pd-0-decode-0": 6, "pd-1-decode-0": 2, "pd-0-decode-1": 3, "pd-0-prefill-0": 9},
        queue=5,
        held=1,
        arrivals_per_second=8,
        arrival_prompt_tokens_per_second=800,
    )
    per_group = slice_router(found, router, 2)
    assert per_group == RouterFigures(
        inflight={"pd-decode-0": 4, "pd-decode-1": 3},
        queue=2.5,
        held=1,
        arrivals_per_second=4,
        arrival_prompt_tokens_per_second=400,
    )
    assert slice_router(found, None, 2) is None
    assert slice_router(found, RouterFigures(), 2) == RouterFigures()


def test_target_units_slices_each_role_over_the_groups_that_stay_or_are_asked_for() -> None:
    pods = [d(0, 0), d(1, 0, annotations=DRAINED), d(2, 0)]
    pods += [pod(g, serving="pd", role="prefill") for g in (0, 2)]
    target = target_units(pods, "pd", endpoint_from_pod, ["decode"], lambda r: 3 if r is None else 1, EPOCH)
    # Groups 0 and 2 stay and the spec asks for one more (3, since 1 is leaving): three groups.
    assert target.groups == 3
    assert [(s.state.name, s.state.ready) for s in target.units["decode"]] == [("pd-decode-0", False)]
    assert [u.state.name for u in target.instances] == ["pd-0-decode-0", "pd-1-decode-0", "pd-2-decode-0"]
    whole = target_units(pods, "pd", endpoint_from_pod, [None], lambda r: 3, EPOCH)
    assert [u.state.name for u in whole.units[None]] == ["pd-0", "pd-1", "pd-2", "pd-3"]
    engines = {"pd-0": UnitFields(waiting=1)}
    assert whole.per_unit(engines, None) == (engines, None)


def test_a_role_instance_drained_in_every_group_leaves_the_groups_in_place() -> None:
    # A role scale-down drains decode 1 in both groups ("role-" reasons): the groups stay.
    role_drain = {**DRAINED, DRAIN_REASON_ANNOTATION: "role-scale-down"}
    pods = [d(g, i, annotations=role_drain if i == 1 else None) for g in (0, 1) for i in (0, 1)]
    whole = group_units(pods, "pd", endpoint_from_pod, declared=2, now=EPOCH)
    assert [(u.state.name, u.state.draining, u.leaving) for u in whole] == [
        ("pd-0", True, False),
        ("pd-1", True, False),
    ]  # no group added in their place
    target = target_units(pods, "pd", endpoint_from_pod, ["decode"], lambda r: 2 if r is None else 1, EPOCH)
    assert target.groups == 2
    assert [(s.state.name, s.state.ready, s.state.draining) for s in target.units["decode"]] == [
        ("pd-decode-0", True, False),
        ("pd-decode-1-draining", True, True),
    ]


def test_the_core_sees_a_slice_as_one_group_s_instance_of_the_role() -> None:
    """Through `role_signals`, as both shells call it: two groups, one decode slice of two ready
    instances, 6 and 2 requests in flight on them, 4 queued at the router and 3 held."""
    pods = [d(0, 0), d(1, 0)]
    target = target_units(pods, "pd", endpoint_from_pod, ["decode"], lambda r: 2 if r is None else 1, EPOCH)
    engines = {"pd-0-decode-0": UnitFields(kv_usage=0.9), "pd-1-decode-0": UnitFields(kv_usage=0.5)}
    router = RouterFigures(inflight={"pd-0-decode-0": 6, "pd-1-decode-0": 2}, queue=4, held=3)
    fields, figures = target.per_unit(engines, router)
    states = {role: [u.state for u in units] for role, units in target.units.items()}
    signals = role_signals(states, fields, figures, {"decode": 5})["decode"]
    (one,) = signals.units
    assert (one.name, one.inflight, one.queue) == ("pd-decode-0", 4, 2)
    assert one.kv_usage is not None and abs(one.kv_usage - 0.7) < 1e-9
    assert (signals.admission_queue, signals.placeable) == (2, 5)  # 3 held over 2 groups: 2
