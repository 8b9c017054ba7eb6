"""The per-role subdomain Services through a group's life: upgrade, role removal, role rollout."""

from __future__ import annotations

import pytest

from phalanx.api.modelserving import ModelServing
from phalanx.controller.actions import Apply, Create, Delete
from tests.unit.controller.cluster import FakeCluster
from tests.unit.controller.test_reconcile import make, running
from tests.unit.controller.test_reconcile_edges import _data, role_image, two_roles

COMPAT_PREFIXES = ("modelserving.volcano.sh/", "leaderworkerset.sigs.k8s.io/")


def as_made_by_the_previous_release(cluster: FakeCluster) -> None:
    """Strip what this release adds: compatibility labels and annotations, LWS env, hostname and
    subdomain, and the per-role subdomain Services."""
    for (kind, name), obj in list(cluster.objects.items()):
        meta = obj["metadata"]
        labels = meta["labels"]
        if (
            kind == "Service"
            and "serving.phalanx.dev/group-index" in labels
            and "serving.phalanx.dev/role-index" not in labels
        ):
            del cluster.objects[(kind, name)]
            continue
        for key in ("labels", "annotations"):
            meta[key] = {k: v for k, v in (meta.get(key) or {}).items() if not k.startswith(COMPAT_PREFIXES)}
        if kind == "Pod":
            spec = obj["spec"]
            spec.pop("hostname"), spec.pop("subdomain")
            for container in spec["containers"]:
                container["env"] = [e for e in container["env"] if not e["name"].startswith("LWS_")]


@pytest.mark.parametrize("rollout", ["ServingGroupRollingUpdate", "RoleRollingUpdate"])
def test_running_groups_only_gain_their_subdomain_services(rollout: str) -> None:
    cluster = running(make(replicas=2, role_replicas=2, rollout_type=rollout))
    before = cluster.group_revisions()
    pods = cluster.pod_names()
    as_made_by_the_previous_release(cluster)
    decision = cluster.step()
    assert [(type(a), a.kind, a.name) for a in decision.actions] == [
        (Create, "Service", "demo-0-decode"),
        (Create, "Service", "demo-1-decode"),
    ]
    assert decision.events == ()
    assert cluster.step().actions == ()  # then quiet: nothing rolls, nothing is recreated
    assert cluster.group_revisions() == before
    assert cluster.pod_names() == pods


def subdomain_services(cluster: FakeCluster) -> dict[str, str]:
    """name -> revision label of every subdomain Service."""
    return {
        s["metadata"]["name"]: s["metadata"]["labels"]["serving.phalanx.dev/revision"]
        for s in cluster.of_kind("Service")
        if "serving.phalanx.dev/group-index" in s["metadata"]["labels"]
        and "serving.phalanx.dev/role-index" not in s["metadata"]["labels"]
    }


def test_a_removed_roles_subdomain_service_goes_after_its_pods() -> None:
    cluster = running(two_roles(decode=1, prefill=1))
    assert set(subdomain_services(cluster)) == {"demo-0-prefill", "demo-0-decode"}
    data = _data(cluster.ms)
    data["spec"]["template"]["roles"] = [
        r for r in data["spec"]["template"]["roles"] if r["name"] != "prefill"
    ]
    cluster.set_spec(ModelServing.model_validate(data))
    deleted: list[str] = []
    for _ in range(30):
        actions = cluster.step().actions
        for action in actions:
            if isinstance(action, Delete) and action.name == "demo-0-prefill":
                # Its pods are gone by then (terminated), so none was left without its DNS name.
                assert not [p for p in cluster.pods() if "-prefill-" in p["metadata"]["name"]]
                deleted.append(action.name)
        cluster.finish_terminations()
        cluster.make_ready()
        cluster.tick(1)
    assert deleted == ["demo-0-prefill"]
    assert set(subdomain_services(cluster)) == {"demo-0-decode"}


def test_a_role_rollout_relabels_the_subdomain_services() -> None:
    """Relabelled, never recreated (their names must not flicker in DNS), so their revision
    label cannot keep an old spec's ControllerRevision alive after its pods are gone."""
    cluster = running(two_roles(decode=2, prefill=1))
    old = set(subdomain_services(cluster).values())
    cluster.set_spec(role_image(cluster.ms, "prefill", "engine:v2"))
    applied = [a.name for a in cluster.step().actions if isinstance(a, Apply) and a.kind == "Service"]
    assert {"demo-0-prefill", "demo-0-decode"} <= set(applied)
    cluster.settle()
    (new,) = set(subdomain_services(cluster).values())
    assert old != {new}
    assert f"demo-{new}" in [o["metadata"]["name"] for o in cluster.of_kind("ControllerRevision")]
