"""Which router pages the operator reads (each ready pod behind the router's Service) and how
their figures add up (a replica not read leaves the router unknown)."""

from __future__ import annotations

from typing import Any

from phalanx.autoscale.observe.router import RouterFigures
from phalanx.operator.router_pages import ServiceUrl, added, pod_urls, service_url

SELECTOR = {"app.kubernetes.io/component": "router", "app.kubernetes.io/instance": "phalanx"}


def service(target_port: Any = "http", port: int = 8000) -> dict[str, Any]:
    return {"spec": {"selector": SELECTOR, "ports": [{"port": port, "targetPort": target_port}]}}


def pod(
    name: str, ip: str | None, *, ready: bool = True, labels: dict[str, str] = SELECTOR
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "router", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_a_service_url_names_the_service_its_namespace_port_and_path() -> None:
    assert service_url("http://phalanx-router.phalanx-system.svc:8000/metrics") == ServiceUrl(
        "phalanx-router", "phalanx-system", 8000, "/metrics"
    )
    assert service_url("http://r.ns.svc.cluster.local/metrics") == ServiceUrl("r", "ns", 80, "/metrics")
    for other in (
        "http://127.0.0.1:8000/metrics",
        "http://router:8000/metrics",
        "http://r.ns.svc.example.com/metrics",
        "https://r.ns.svc:8000/metrics",  # a pod's own address has no certificate for its IP
        "http://r.ns.svc:99999/metrics",
    ):
        assert service_url(other) is None, other


def test_each_ready_pod_behind_the_service_is_read_at_its_own_address_and_named_port() -> None:
    target = ServiceUrl("phalanx-router", "phalanx-system", 8000, "/metrics")
    pods = [
        pod("router-a", "10.0.0.5"),
        pod("router-b", "10.0.0.6"),
        pod("router-starting", "10.0.0.7", ready=False),
        pod("router-unplaced", None),
        pod("operator", "10.0.0.8", labels={"app.kubernetes.io/component": "operator"}),
    ]
    assert pod_urls(service(), pods, target) == {
        "router-a": "http://10.0.0.5:8080/metrics",
        "router-b": "http://10.0.0.6:8080/metrics",
    }
    assert pod_urls(service(9000), pods[:1], target) == {"router-a": "http://10.0.0.5:9000/metrics"}
    assert pod_urls(service(), [], target) == {}  # no router ready: nothing to read, unknown


def test_a_service_without_a_selector_or_the_port_is_read_as_it_is() -> None:
    target = ServiceUrl("r", "ns", 8000, "/metrics")
    assert pod_urls({"spec": {"ports": [{"port": 8000}]}}, [pod("a", "10.0.0.5")], target) is None
    assert pod_urls(service(port=443), [pod("a", "10.0.0.5")], target) is None


def test_the_replicas_figures_add_up_and_one_unknown_makes_the_whole_unknown() -> None:
    a = RouterFigures(
        {"chat-0": 3, "chat-1": 1},
        queue=2,
        held=0,
        arrivals_per_second=1.5,
        arrival_prompt_tokens_per_second=300,
    )
    b = RouterFigures(
        {"chat-1": 2}, queue=1, held=4, arrivals_per_second=0.5, arrival_prompt_tokens_per_second=100
    )
    assert added([a, b]) == RouterFigures(
        {"chat-0": 3, "chat-1": 3},
        queue=3,
        held=4,
        arrivals_per_second=2.0,
        arrival_prompt_tokens_per_second=400,
    )
    assert added([a]) == a
    assert added([a, None]) is None  # one replica's share is not the whole
    assert added([]) is None
    # A figure one replica's page does not give (a restart: no rate this window) is unknown in the sum.
    restarted = RouterFigures({}, queue=0, held=0, arrivals_per_second=None)
    summed = added([a, restarted])
    assert summed is not None
    assert (summed.queue, summed.arrivals_per_second, summed.arrival_prompt_tokens_per_second) == (
        2,
        None,
        None,
    )
