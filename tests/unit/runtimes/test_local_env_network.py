from __future__ import annotations

import sys
from typing import Any

import pytest

from phalanx.runtimes.local.env import ConfigError, command_line, container_env, expand
from phalanx.runtimes.local.network import AddressPool, host_addresses, resolve_dns, service_address


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", env) == "1-two"
    assert expand("$(MISSING)", env) == "$(MISSING)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("cost $$5 $", env) == "cost $5 $"
    assert expand("$(A", env) == "$(A"
    assert expand("$A", env) == "$A"


def test_container_env_order_fieldrefs_and_gpus() -> None:
    container = {
        "name": "engine",
        "env": [
            {"name": "HOST", "value": "$(POD_IP):8000"},
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "LATER", "value": "$(LATER2)"},
            {"name": "LATER2", "value": "x"},
            {"name": "CUDA_VISIBLE_DEVICES", "value": "0,1,2,3"},
        ],
    }
    env = container_env(container, pod_name="p", namespace="ns", pod_ip="127.9.0.2", gpu_ids=(2, 3))
    assert env["HOST"] == "127.9.0.2:8000"
    assert env["ME"] == "p"
    assert env["POD_NAMESPACE"] == "ns"
    assert env["LATER"] == "$(LATER2)"  # only variables defined earlier expand
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"  # a pod never sees GPUs it was not given
    assert (
        container_env({"name": "c"}, pod_name="p", namespace="n", pod_ip="", gpu_ids=())[
            "CUDA_VISIBLE_DEVICES"
        ]
        == ""
    )


def test_container_env_rejects_sources_the_local_runtime_lacks() -> None:
    container = {
        "name": "c",
        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    with pytest.raises(ConfigError, match="env T comes from secretKeyRef"):
        container_env(container, pod_name="p", namespace="n", pod_ip="", gpu_ids=())


def test_command_line_expands_and_runs_phalanx_from_this_install() -> None:
    container = {"name": "c", "command": ["phalanx", "sim"], "args": ["--host", "$(POD_IP)", "$$(X)"]}
    assert command_line(container, {"POD_IP": "127.1.0.2"}) == [
        sys.executable,
        "-m",
        "phalanx",
        "sim",
        "--host",
        "127.1.0.2",
        "$(X)",
    ]
    with pytest.raises(ConfigError, match="ignores images"):
        command_line({"name": "c", "image": "vllm/vllm-openai"}, {})


def test_address_pool_is_stable_unique_and_never_localhost() -> None:
    pool = AddressPool()
    first = pool.address("default", "a")
    assert first != "127.0.0.1" and first.startswith(f"127.{pool.second_octet}.")
    assert pool.address("default", "a") == first
    addresses = {pool.address("default", f"p{i}") for i in range(600)}
    assert len(addresses) == 600
    assert all(not a.endswith(".0") and not a.endswith(".255") for a in addresses)


def test_service_names_resolve_to_the_selected_pod() -> None:
    addresses = {("default", "qs-0-sim-0-0"): "127.20.0.2"}
    assert resolve_dns("qs-0-sim-0-0.default", addresses) == "127.20.0.2"
    assert resolve_dns("qs-0-sim-0-0.default.svc", addresses) == "127.20.0.2"
    assert resolve_dns("http://qs-0-sim-0-0.default.svc.cluster.local:8001/x", addresses) == (
        "http://127.20.0.2:8001/x"
    )
    assert resolve_dns("qs-0-sim-0-0.other", addresses) == "qs-0-sim-0-0.other"
    assert resolve_dns("a.qs-0-sim-0-0.default", addresses) == "a.qs-0-sim-0-0.default"
    assert resolve_dns("qs-0-sim-0-0.default.example.com", addresses) == "qs-0-sim-0-0.default.example.com"


def test_headless_service_selects_the_entry_pod() -> None:
    service = {"spec": {"selector": {"role": "sim", "entry": "true"}}}
    pods = [
        {
            "metadata": {"name": "w", "labels": {"role": "sim", "entry": "false"}},
            "status": {"podIP": "127.2.0.3"},
        },
        {
            "metadata": {"name": "e", "labels": {"role": "sim", "entry": "true"}},
            "status": {"podIP": "127.2.0.2"},
        },
    ]
    assert service_address(service, pods) == "127.2.0.2"
    assert service_address({"spec": {}}, pods) is None


def _pod(name: str, ip: str, labels: dict[str, str], deleting: bool = False, **spec: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "labels": labels}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": dict(spec), "status": {"podIP": ip}}


def _service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": selector}}


def test_pod_hostnames_resolve_under_a_subdomain_service_that_selects_them() -> None:
    role = {"group": "0", "role": "sim"}
    pods = [
        _pod("qs-0-sim-0-0", "127.20.0.2", role, hostname="qs-0-sim-0", subdomain="qs-0-sim"),
        _pod("qs-0-sim-0-1", "127.20.0.3", role, hostname="qs-0-sim-0-1", subdomain="qs-0-sim"),
        # Its subdomain Service does not select it, or does not exist: no record (as cluster DNS).
        _pod("stray", "127.20.0.9", {"role": "other"}, hostname="stray", subdomain="qs-0-sim"),
        _pod("lost", "127.20.0.8", role, hostname="lost", subdomain="missing"),
        # No hostname: only its Service's name can reach it.
        _pod("plain", "127.20.0.7", role, subdomain="qs-0-sim"),
    ]
    hosts = host_addresses([_service("qs-0-sim", role)], pods)
    assert hosts == {
        ("default", "qs-0-sim", "qs-0-sim-0"): "127.20.0.2",
        ("default", "qs-0-sim", "qs-0-sim-0-1"): "127.20.0.3",
    }
    services = {("default", "qs-0-sim-0-0"): "127.20.0.2"}
    for name in ("qs-0-sim-0-1.qs-0-sim.default", "qs-0-sim-0-1.qs-0-sim.default.svc"):
        assert resolve_dns(name, services, hosts) == "127.20.0.3"
    leader = "tcp://qs-0-sim-0.qs-0-sim.default.svc.cluster.local:20000"
    assert resolve_dns(leader, services, hosts) == "tcp://127.20.0.2:20000"
    both = "--peers qs-0-sim-0-0.default,qs-0-sim-0-1.qs-0-sim.default:5"
    assert resolve_dns(both, services, hosts) == "--peers 127.20.0.2,127.20.0.3:5"
    for unknown in (
        "stray.qs-0-sim.default",
        "qs-0-sim-0-1.qs-0-sim.other",
        "x.qs-0-sim-0-1.qs-0-sim.default",
    ):
        assert resolve_dns(unknown, services, hosts) == unknown


def test_a_live_pod_wins_a_hostname_over_a_terminating_one() -> None:
    role = {"role": "sim"}
    old = _pod("a-old", "127.20.0.2", role, deleting=True, hostname="h", subdomain="s")
    new = _pod("z-new", "127.20.0.5", role, hostname="h", subdomain="s")
    for pods in ([old, new], [new, old]):
        assert host_addresses([_service("s", role)], pods) == {("default", "s", "h"): "127.20.0.5"}


def test_downward_api_labels_annotations_and_host_ip() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "KEY", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['example.com/key']"}}},
            {"name": "SIZE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['size']"}}},
            {"name": "NONE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['absent']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "BOTH", "value": "$(KEY)/$(SIZE)"},
        ],
    }
    env = container_env(
        container,
        pod_name="p",
        namespace="n",
        pod_ip="127.9.0.2",
        gpu_ids=(),
        labels={"example.com/key": "k1"},
        annotations={"size": "3"},
    )
    assert (env["KEY"], env["SIZE"], env["NONE"], env["NODE"], env["BOTH"]) == (
        "k1",
        "3",
        "",
        "127.0.0.1",
        "k1/3",
    )
    whole = {"name": "c", "env": [{"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}]}
    with pytest.raises(ConfigError, match=r"comes from metadata\.labels, which"):
        container_env(whole, pod_name="p", namespace="n", pod_ip="", gpu_ids=())
