"""Kthena's label set on Phalanx objects: its affinity terms and downward-API env select and read
what they would on Kthena."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.api import ModelServing, parse_resource
from phalanx.controller.desired import steady_state
from tests.unit.controller.kube_dns import selects

Object = dict[str, Any]
NAME = "modelserving.volcano.sh/name"
GROUP = "modelserving.volcano.sh/group-name"
ROLE = "modelserving.volcano.sh/role"
ROLE_ID = "modelserving.volcano.sh/role-id"

# Which pods share a node, per scope (as in Kthena's kube-scheduler pod-affinity examples).
SCOPES = {"role instance": [GROUP, ROLE, ROLE_ID], "serving group": [GROUP], "model serving": []}


def affinity(keys: list[str]) -> Object:
    term = {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": {NAME: "pd"}},
        "matchLabelKeys": keys,
    }
    return {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }


def serving(keys: list[str], labels: dict[str, str] | None = None) -> ModelServing:
    downward = [
        {"name": "GROUP_NAME", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{GROUP}']"}}},
        {"name": "ROLE_ID", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{ROLE_ID}']"}}},
    ]

    def template(container: str) -> Object:
        spec = {
            "affinity": affinity(keys),
            "containers": [{"name": container, "image": "sim", "env": downward}],
        }
        return {"metadata": {"labels": labels or {}}, "spec": spec}

    roles = [
        {
            "name": name,
            "workerReplicas": 1,
            "entryTemplate": template("leader"),
            "workerTemplate": template("worker"),
        }
        for name in ("prefill", "decode")
    ]
    data = {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelServing",
        "metadata": {"name": "pd"},
        "spec": {"replicas": 2, "schedulerName": "default-scheduler", "template": {"roles": roles}},
    }
    ms, problems = parse_resource(data)
    assert isinstance(ms, ModelServing), [p.render() for p in problems]
    return ms


def pods_of(ms: ModelServing) -> list[Object]:
    return [o for o in steady_state(ms) if o["kind"] == "Pod"]


def term_selector(pod: Object) -> dict[str, str]:
    """The selector the API server stores for a pod's term: matchLabels plus, for each key in
    matchLabelKeys that the pod itself carries, that key = the pod's own value."""
    (weighted,) = pod["spec"]["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    term = weighted["podAffinityTerm"]
    labels = pod["metadata"]["labels"]
    own = {key: labels[key] for key in term["matchLabelKeys"] if key in labels}
    return {**term["labelSelector"]["matchLabels"], **own}


def instance(pod: Object) -> str:
    return str(pod["metadata"]["name"].rsplit("-", 1)[0])


@pytest.mark.parametrize("scope", SCOPES)
def test_affinity_terms_select_the_scope_they_select_on_kthena(scope: str) -> None:
    pods = pods_of(serving(SCOPES[scope]))
    assert len(pods) == 8  # 2 groups x 2 roles x (entry + worker)
    expected = {
        "role instance": lambda a, b: instance(a) == instance(b),
        "serving group": lambda a, b: a["metadata"]["name"][:5] == b["metadata"]["name"][:5],  # "pd-<g>"
        "model serving": lambda a, b: True,
    }[scope]
    for pod in pods:
        selector = term_selector(pod)
        chosen = {p["metadata"]["name"] for p in pods if selects(selector, p["metadata"]["labels"])}
        assert chosen == {p["metadata"]["name"] for p in pods if expected(pod, p)}, pod["metadata"]["name"]


def test_kthena_label_values() -> None:
    pods = {p["metadata"]["name"]: p["metadata"]["labels"] for p in pods_of(serving([]))}
    entry, worker = pods["pd-1-decode-0-0"], pods["pd-1-decode-0-1"]
    assert {k: v for k, v in worker.items() if k.startswith("modelserving.volcano.sh/")} == {
        NAME: "pd",
        GROUP: "pd-1",
        ROLE: "decode",
        ROLE_ID: "decode-0",
        "modelserving.volcano.sh/revision": worker["serving.phalanx.dev/revision"],
        "modelserving.volcano.sh/role-template-hash": worker["serving.phalanx.dev/role-revision"],
    }
    # Kthena marks entry pods only; a selector on entry=true finds one pod per role instance.
    assert entry["modelserving.volcano.sh/entry"] == "true"
    assert "modelserving.volcano.sh/entry" not in worker


def test_downward_api_env_reads_kthena_labels() -> None:
    for pod in pods_of(serving([])):
        labels = pod["metadata"]["labels"]
        for item in pod["spec"]["containers"][0]["env"]:
            if "valueFrom" in item:
                path = item["valueFrom"]["fieldRef"]["fieldPath"]
                key = path[len("metadata.labels['") : -len("']")]
                assert labels[key] == {"GROUP_NAME": labels[GROUP], "ROLE_ID": labels[ROLE_ID]}[item["name"]]
    assert {p["metadata"]["labels"][ROLE_ID] for p in pods_of(serving([]))} == {"prefill-0", "decode-0"}


def test_a_template_label_keeps_its_value_as_on_kthena() -> None:
    # Kthena's router examples set group-name in the template to pair prefill and decode pods.
    pods = pods_of(serving([], labels={GROUP: "group-0"}))
    assert {p["metadata"]["labels"][GROUP] for p in pods} == {"group-0"}
    assert {p["metadata"]["labels"]["serving.phalanx.dev/group-index"] for p in pods} == {"0", "1"}


def test_headless_services_and_podgroups_carry_kthena_labels_too() -> None:
    data_ms = serving([])
    volcano = data_ms.model_copy(
        update={"spec": data_ms.spec.model_copy(update={"scheduler_name": "volcano"})}
    )
    objects = steady_state(volcano)
    entry_service = next(
        o for o in objects if o["metadata"]["name"] == "pd-1-decode-0-0" and o["kind"] == "Service"
    )
    assert {k: v for k, v in entry_service["metadata"]["labels"].items() if k.startswith("modelserving")} == {
        NAME: "pd",
        GROUP: "pd-1",
        ROLE: "decode",
        ROLE_ID: "decode-0",
    }
    podgroup = next(o for o in objects if o["kind"] == "PodGroup" and o["metadata"]["name"] == "pd-1")
    assert {k: v for k, v in podgroup["metadata"]["labels"].items() if k.startswith("modelserving")} == {
        NAME: "pd",
        GROUP: "pd-1",
    }
