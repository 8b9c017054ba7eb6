"""What a shell does with one decision: events, a count to set, or an observation only."""

from __future__ import annotations

from phalanx.autoscale.act import act
from phalanx.autoscale.policy_status import roles_refusal
from phalanx.autoscale.types import AutoscaleEvent, Decision, History


def decision(current: int, desired: int, *events: AutoscaleEvent) -> Decision:
    return Decision(
        desired, current, current, "Stable", "queue 9 over target 4 asks for 3", History(), {}, events
    )


def test_a_new_count_is_set_and_the_outcome_names_the_policy_and_the_reason() -> None:
    one = act("chat-a", decision(1, 3), 1, observe_only=False)
    assert one.replicas == 3
    assert one.events == ()
    assert one.applied() == AutoscaleEvent(
        "Normal",
        "Autoscaled",
        "AutoscalingPolicy chat-a set replicas 1 -> 3: queue 9 over target 4 asks for 3",
    )
    failed = one.failed("409 Conflict")
    assert (failed.type, failed.reason) == ("Warning", "AutoscaleFailed")
    assert failed.message.startswith("AutoscalingPolicy chat-a cannot set replicas 1 -> 3: ")
    assert failed.message.endswith(": 409 Conflict")


def test_a_role_is_named_in_the_change() -> None:
    one = act("pd", decision(1, 2), 1, observe_only=False, role="decode")
    assert one.replicas == 2
    assert one.change.startswith("role decode replicas 1 -> 2: ")


def test_a_count_already_in_the_spec_is_not_set_again_but_the_core_events_still_go_out() -> None:
    warning = AutoscaleEvent("Warning", "ScaleUpBlocked", "group chat-3 has been pending 312 s")
    # The spec says 3 already (set last pass), the units are still 1: nothing to set.
    one = act("chat-a", decision(1, 3, warning), 3, observe_only=False)
    assert one.replicas is None
    assert one.events == (
        AutoscaleEvent(
            "Warning", "ScaleUpBlocked", "AutoscalingPolicy chat-a: group chat-3 has been pending 312 s"
        ),
    )


def test_observe_only_sets_nothing_and_says_what_it_would_set_once_not_every_pass() -> None:
    one = act("chat-a", decision(1, 3), 1, observe_only=True, reported=1)
    assert one.replicas is None
    (observed,) = one.events
    assert (observed.type, observed.reason) == ("Normal", "AutoscaleObserved")
    assert observed.message.startswith("AutoscalingPolicy chat-a would set replicas 1 -> 3: ")
    # The next pass asks the same (the units never move under observeOnly): said already.
    again = act("chat-a", decision(1, 3), 1, observe_only=True, reported=3)
    assert (again.replicas, again.events) == (None, ())
    # A new status (None) has said nothing yet; a changed mind is said again.
    assert act("chat-a", decision(1, 3), 1, observe_only=True).events[0].reason == "AutoscaleObserved"
    assert (
        act("chat-a", decision(1, 2), 1, observe_only=True, reported=3).events[0].reason
        == "AutoscaleObserved"
    )
    # Nothing to say when the spec already holds the count.
    assert act("chat-a", decision(3, 3), 3, observe_only=True, reported=1).events == ()


def test_roles_act_on_a_serving_of_any_number_of_groups_but_none() -> None:
    assert roles_refusal("pd", 1) is None
    assert roles_refusal("pd", 3) is None  # each slice puts one instance in each of the 3 groups
    refused = roles_refusal("pd", 0)
    assert refused is not None
    assert (refused.type, refused.status, refused.reason) == ("Ready", "False", "NotSupported")
    assert "spec.replicas 1 or more (it has 0)" in (refused.message or "")
