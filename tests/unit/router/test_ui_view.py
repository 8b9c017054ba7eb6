"""The web view's model: plain data in, the page's bounded document out."""

from __future__ import annotations

from typing import Any

from phalanx.api import labels as L
from phalanx.router import webview
from phalanx.router.kubeview import event_record, newest_events, unreadable_after
from phalanx.router.webview import EndpointLoad, build_view, lane, pod_records, text


def serving(
    name: str = "chat", replicas: int = 2, groups: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "template": {"roles": [{"name": "leader"}, {"name": "worker"}]}},
        "status": {
            "replicas": len(groups or []),
            "updatedReplicas": 1,
            "updateRevision": "rev-2",
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "False"},
            ],
            "groups": groups or [],
        },
    }


def pod(name: str, group: int, role: str, **kw: Any) -> dict[str, Any]:
    record = {"name": name, "namespace": "default", "serving": "chat", "role": role, "group": group}
    record.update({"roleIndex": 0, "entry": role == "leader", "phase": "Running", "ready": True})
    record.update(kw)
    return record


GROUPS = [
    {"index": 0, "name": "chat-0", "phase": "Ready", "revision": "rev-2"},
    {"index": 1, "name": "chat-1", "phase": "Starting", "revision": "rev-1", "surge": True, "message": "m"},
]
PODS = [
    pod("chat-0-leader-0", 0, "leader"),
    pod("chat-0-worker-0", 0, "worker", entry=False),
    pod("chat-1-leader-0", 1, "leader", ready=False, phase="Pending", reason="Unschedulable"),
]


def test_each_serving_shows_its_groups_roles_and_pods_with_the_routers_load() -> None:
    loads = [EndpointLoad("default/chat-0-leader-0", True, 3, waiting=2, running=5, kv_cache_usage=0.4)]
    view = build_view({"servings": [serving(groups=GROUPS)], "pods": PODS}, loads, source="up")
    (ms,) = view["servings"]
    assert (ms["name"], ms["desired"], ms["current"], ms["updated"], ms["revision"]) == (
        "chat",
        2,
        2,
        1,
        "rev-2",
    )
    assert ms["conditions"] == ["Available"]
    assert [g["name"] for g in ms["groups"]] == ["chat-0", "chat-1"]
    first, second = ms["groups"]
    assert first["serving"] and not second["serving"] and ms["serving"] == 1
    assert second["surge"] and second["phase"] == "Starting" and second["message"] == "m"
    assert [r["name"] for r in first["roles"]] == ["leader", "worker"]
    leader = first["roles"][0]["pods"][0]
    assert leader["endpoint"] == {
        "routable": True,
        "healthy": True,
        "inFlight": 3,
        "waiting": 2,
        "running": 5,
        "kvCacheUsage": 0.4,
    }
    assert first["roles"][1]["pods"][0]["endpoint"] is None  # a worker is no endpoint
    pending = second["roles"][0]["pods"][0]
    assert (pending["phase"], pending["ready"], pending["reason"]) == ("Pending", False, "Unschedulable")
    assert second["roles"][1]["pods"] == []  # the role is shown even with no pod yet
    assert view["otherEndpoints"] == [] and view["source"] == "up"


def test_a_group_with_pods_but_no_status_yet_is_shown_and_endpoints_without_pods_are_listed() -> None:
    loads = [EndpointLoad("static/http://10.0.0.9:8000", True, 0)]
    view = build_view({"servings": [serving()], "pods": PODS[:1]}, loads, source="up")
    (group,) = view["servings"][0]["groups"]
    assert (group["index"], group["name"], group["phase"]) == (0, "group 0", "Unknown")
    assert [e["name"] for e in view["otherEndpoints"]] == ["static/http://10.0.0.9:8000"]


def test_pods_of_another_serving_or_namespace_stay_out() -> None:
    stray = [pod("other-0-leader-0", 0, "leader", serving="other"), pod("x", 0, "leader", namespace="ns2")]
    view = build_view({"servings": [serving()], "pods": stray}, [], source="up")
    assert view["servings"][0]["groups"] == []


def test_a_role_removed_from_the_spec_still_shows_its_pods_last() -> None:
    pods = [pod("chat-0-old-0", 0, "old"), pod("chat-0-leader-0", 0, "leader")]
    view = build_view({"servings": [serving()], "pods": pods}, [], source="up")
    assert [r["name"] for r in view["servings"][0]["groups"][0]["roles"]] == ["leader", "worker", "old"]


def test_policies_show_desired_current_ready_and_reason_or_why_they_do_not_act() -> None:
    homogeneous = {
        "metadata": {"name": "p"},
        "spec": {"homogeneousTarget": {"target": {"targetRef": {"name": "chat"}}}, "observeOnly": True},
        "status": {
            "homogeneousStatus": {
                "desiredReplicas": 3,
                "currentReplicas": 2,
                "readyReplicas": 1,
                "mode": "Stable",
                "reason": "queue 12 > 4",
            }
        },
    }
    pd = {
        "metadata": {"name": "pd"},
        "spec": {"disaggregatedTarget": {"targetRef": {"name": "split"}}},
        "status": {"disaggregatedStatus": {"roles": [{"name": "prefill", "desiredReplicas": 2}]}},
    }
    blocked = {
        "metadata": {"name": "b"},
        "spec": {},
        "status": {
            "conditions": [{"type": "TargetFound", "status": "False", "message": "no ModelServing x"}]
        },
    }
    fresh = {"metadata": {"name": "new"}, "spec": {}, "status": {}}
    rows = build_view({"policies": [homogeneous, pd, blocked, fresh]}, [], source="up")["policies"]
    assert [(r["name"], r["role"], r["target"], r["desired"], r["reason"]) for r in rows] == [
        ("p", "", "chat", 3, "queue 12 > 4"),
        ("pd", "prefill", "split", 2, ""),
        ("b", "", "", None, "no ModelServing x"),
        ("new", "", "", None, "no decision yet"),
    ]
    assert rows[0]["observeOnly"] and (rows[0]["current"], rows[0]["ready"]) == (2, 1)


def test_the_timeline_sorts_events_into_lanes() -> None:
    assert lane("RolloutStarted") == "rollout"
    assert lane("GroupUpdated") == "rollout"
    assert lane("Recovering") == "recovery"
    assert lane("BackOff") == "recovery"
    assert lane("ScaledUp") == "scaling"
    assert lane("AutoscaleDecision") == "scaling"
    assert lane("Created") == "other"
    event = {
        "time": "2026-01-01T00:00:01Z",
        "type": "Warning",
        "reason": "Recovering",
        "message": "pod exited",
        "involvedObject": {"kind": "Pod", "name": "chat-0-leader-0"},
    }
    (row,) = build_view({"events": [event]}, [], source="up")["timeline"]
    assert row == {
        "time": "2026-01-01T00:00:01Z",
        "type": "Warning",
        "lane": "recovery",
        "object": "pod/chat-0-leader-0",
        "reason": "Recovering",
        "message": "pod exited",
    }


def test_everything_is_bounded() -> None:
    assert text("x" * 1000) == "x" * (webview.MAX_TEXT - 1) + "…"
    assert text(None) == ""
    many_groups = [{"index": i, "name": f"g{i}", "phase": "Ready"} for i in range(webview.MAX_GROUPS + 5)]
    events = [{"reason": f"r{i}", "message": "m" * 5000} for i in range(webview.MAX_EVENTS + 20)]
    servings = [serving(name=f"s{i}") for i in range(webview.MAX_SERVINGS + 3)]
    view = build_view(
        {"servings": [serving(groups=many_groups), *servings], "events": events}, [], source="up"
    )
    assert len(view["servings"]) == webview.MAX_SERVINGS and view["servingsLeftOut"] == 4
    assert len(view["servings"][0]["groups"]) == webview.MAX_GROUPS
    assert view["servings"][0]["groupsLeftOut"] == 5
    assert len(view["timeline"]) == webview.MAX_EVENTS
    assert view["timeline"][-1]["reason"] == f"r{webview.MAX_EVENTS + 19}"  # the newest are kept
    assert all(len(e["message"]) == webview.MAX_TEXT for e in view["timeline"])


def test_the_pod_budget_is_shared_by_all_servings() -> None:
    pods = [pod(f"chat-0-leader-{i}", 0, "leader", roleIndex=i) for i in range(webview.MAX_PODS + 10)]
    view = build_view({"servings": [serving()], "pods": pods}, [], source="up")
    shown = sum(len(r["pods"]) for g in view["servings"][0]["groups"] for r in g["roles"])
    assert shown == webview.MAX_PODS and view["podsLeftOut"] == 10


def test_malformed_input_gives_a_page_not_a_traceback() -> None:
    snapshot = {
        "servings": [{"metadata": None, "spec": "x", "status": {"groups": ["bad", {"index": "1"}]}}, "junk"],
        "pods": ["junk", {"group": "x", "serving": None}],
        "policies": [{}],
        "events": ["junk", {"involvedObject": None}],
    }
    view = build_view(snapshot, [], source="kubernetes")
    assert len(view["servings"]) == 1 and len(view["timeline"]) == 1
    assert build_view({}, [], source="none")["servings"] == []


def test_kubernetes_pods_become_the_status_payloads_records() -> None:
    labels = {L.NAME: "chat", L.GROUP_INDEX: "1", L.ROLE: "leader", L.ROLE_INDEX: "0", L.ENTRY: "true"}
    obj = {
        "metadata": {"name": "chat-1-leader-0", "namespace": "prod", "labels": labels},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"restartCount": 2}],
        },
    }
    (record,) = pod_records([obj, {"metadata": {"name": "not-ours"}}])
    assert record["name"] == "chat-1-leader-0" and record["namespace"] == "prod"
    assert (record["serving"], record["group"], record["role"], record["phase"]) == (
        "chat",
        1,
        "leader",
        "Running",
    )
    assert record["ready"] and record["restarts"] == 2 and not record["terminating"]


def test_kubernetes_events_of_our_servings_only_newest_last() -> None:
    def event(kind: str, name: str, when: str) -> dict[str, Any]:
        return {"involvedObject": {"kind": kind, "name": name}, "lastTimestamp": when, "reason": "R"}

    events = [
        event("Pod", "chat-0-leader-0", "2026-01-01T00:00:03Z"),
        event("ModelServing", "chat", "2026-01-01T00:00:01Z"),
        event("Pod", "chatter-0", "2026-01-01T00:00:02Z"),  # another serving's pod
        event("Node", "chat", "2026-01-01T00:00:04Z"),  # not our kind
        event("Pod", "chat-1-leader-0", "2026-01-01T00:00:05Z"),
    ]
    newest = newest_events(events, {"chat"}, 2)
    assert [(e["involvedObject"]["name"], e["time"]) for e in newest] == [
        ("chat-0-leader-0", "2026-01-01T00:00:03Z"),
        ("chat-1-leader-0", "2026-01-01T00:00:05Z"),
    ]
    created = event_record({"metadata": {"creationTimestamp": "2026-01-01T00:00:09Z"}})
    assert created["time"] == "2026-01-01T00:00:09Z" and created["type"] == "Normal"


def test_a_forbidden_list_is_unreadable_a_missing_crd_is_empty_and_other_failures_change_nothing() -> None:
    assert unreadable_after(403) is True
    assert unreadable_after(404) is False  # the AutoscalingPolicy CRD is not installed: none to show
    assert unreadable_after(500) is None and unreadable_after(None) is None  # keep the last list


def test_what_cannot_be_read_is_passed_to_the_page_bounded() -> None:
    view = build_view({"unreadable": ["events (needs list on events)", "x" * 500]}, [], source="kubernetes")
    assert view["unreadable"][0] == "events (needs list on events)"
    assert len(view["unreadable"][1]) == 120
    assert build_view({}, [], source="up")["unreadable"] == []
