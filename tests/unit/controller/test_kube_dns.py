"""The cluster DNS model the identity tests rely on, on the cases of the Kubernetes DNS spec."""

from __future__ import annotations

from typing import Any

from tests.unit.controller.kube_dns import (
    Endpoint,
    endpoints_from_pods,
    endpoints_from_slices,
    records,
    resolve,
)

Object = dict[str, Any]


def pod(name: str, ready: bool, **spec: str) -> Object:
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": {"app": "x"}},
        "spec": spec,
        "status": status,
    }


def headless(name: str, publish_not_ready: bool) -> Object:
    spec = {"clusterIP": "None", "selector": {"app": "x"}, "publishNotReadyAddresses": publish_not_ready}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


PODS = [
    pod("a", True, hostname="a", subdomain="sub"),
    pod("b", False, hostname="b", subdomain="sub"),
    pod("c", True),
]
IPS = {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}


def test_headless_service_records_follow_readiness_and_subdomain() -> None:
    strict = headless("sub", publish_not_ready=False)
    zone = records([(strict, endpoints_from_pods(strict, PODS, IPS))])
    assert zone["sub.ns.svc.cluster.local"] == {"10.0.0.1", "10.0.0.3"}  # b is not ready
    assert zone["a.sub.ns.svc.cluster.local"] == {"10.0.0.1"}
    assert "b.sub.ns.svc.cluster.local" not in zone
    eager = headless("sub", publish_not_ready=True)
    zone = records([(eager, endpoints_from_pods(eager, PODS, IPS))])
    assert zone["b.sub.ns.svc.cluster.local"] == {"10.0.0.2"}
    # A pod's hostname is published only under the Service its subdomain names.
    other = headless("other", publish_not_ready=True)
    assert {e.hostname for e in endpoints_from_pods(other, PODS, IPS)} == {None}


def test_lookups_use_the_pods_search_path() -> None:
    service = headless("sub", publish_not_ready=True)
    zone = records([(service, endpoints_from_pods(service, PODS, IPS))])
    for name in (
        "a.sub",
        "a.sub.ns",
        "a.sub.ns.svc",
        "a.sub.ns.svc.cluster.local",
        "a.sub.ns.svc.cluster.local.",
    ):
        assert resolve(name, "ns", zone) == {"10.0.0.1"}, name
    assert resolve("a.sub", "elsewhere", zone) == frozenset()  # the short form works in its namespace only
    assert resolve("a.sub.ns", "elsewhere", zone) == {"10.0.0.1"}
    assert resolve("a.sub.ns.cluster.local", "ns", zone) == frozenset()


def test_cluster_ip_services_answer_their_virtual_ip() -> None:
    service = {
        "metadata": {"name": "api", "namespace": "ns"},
        "spec": {"clusterIP": "10.96.0.7", "selector": {"app": "x"}},
    }
    zone = records([(service, endpoints_from_pods(service, PODS, IPS))])
    assert zone == {"api.ns.svc.cluster.local": frozenset({"10.96.0.7"})}


def test_endpoint_slices_read_into_the_same_records() -> None:
    slices = [
        {
            "endpoints": [
                {
                    "addresses": ["10.0.0.1"],
                    "hostname": "a",
                    "conditions": {"ready": True},
                    "targetRef": {"name": "a"},
                },
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}, "targetRef": {"name": "b"}},
                {"addresses": ["10.0.0.3"], "conditions": {}, "targetRef": {"name": "c"}},
            ]
        }
    ]
    assert endpoints_from_slices(slices) == {
        Endpoint("a", "10.0.0.1", "a", True),
        Endpoint("b", "10.0.0.2", None, False),
        Endpoint("c", "10.0.0.3", None, True),
    }
