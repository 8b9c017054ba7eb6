"""LeaderWorkerSet workloads run unchanged in a Phalanx role instance: env, labels and DNS names.

Pods are rendered by `desired`, their env and command lines are expanded as a kubelet does, and
the addresses are looked up in a model of cluster DNS built from the rendered Services (see
kube_dns.py): every address must reach the right pod of the same role instance.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from phalanx.api import ModelServing
from phalanx.controller.desired import steady_state
from phalanx.runtimes.local.env import expand
from tests.unit.controller import kube_dns
from tests.unit.controller.lws_workloads import (
    NAMESPACE,
    WORKLOADS,
    llamacpp,
    llamacpp_rpc_hosts,
    sglang,
    tensorrt,
    tensorrt_selector,
    vllm_ray,
)

Object = dict[str, Any]
_KEYED_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")
_SHELL_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class Rendered:
    """One ModelServing's objects with made-up pod IPs, and the DNS zone they would produce."""

    def __init__(self, *servings: ModelServing) -> None:
        self.objects = [o for ms in servings for o in steady_state(ms)]
        self.pods = [o for o in self.objects if o["kind"] == "Pod"]
        self.ips = {p["metadata"]["name"]: f"10.1.{i // 250}.{i % 250 + 1}" for i, p in enumerate(self.pods)}
        services = [o for o in self.objects if o["kind"] == "Service"]
        # Not one pod is Ready: workers must find their entry pod while everything is starting.
        self.zone = kube_dns.records(
            (s, kube_dns.endpoints_from_pods(s, self.pods, self.ips)) for s in services
        )

    def pod(self, name: str) -> Object:
        return next(p for p in self.pods if p["metadata"]["name"] == name)

    def entry_of(self, pod: Object) -> Object:
        return self.pod(pod["metadata"]["name"].rsplit("-", 1)[0] + "-0")

    def lookup(self, name: str, pod: Object) -> frozenset[str]:
        return kube_dns.resolve(name, pod["metadata"]["namespace"], self.zone)


def field(pod: Object, path: str, ip: str) -> str:
    """A downward-API fieldRef, as the kubelet answers it (a missing label reads as "")."""
    one = _KEYED_FIELD.match(path)
    if one:
        return str((pod["metadata"].get(one.group(1)) or {}).get(one.group(2), ""))
    return {"metadata.name": pod["metadata"]["name"], "metadata.namespace": NAMESPACE, "status.podIP": ip}[
        path
    ]


def kubelet_env(pod: Object, container: Object, ip: str) -> dict[str, str]:
    """Env in list order; `$(VAR)` in a value sees only the variables defined before it."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        if "valueFrom" in item:
            env[item["name"]] = field(pod, item["valueFrom"]["fieldRef"]["fieldPath"], ip)
        else:
            env[item["name"]] = expand(item.get("value", ""), env)
    return env


def argv(container: Object, env: dict[str, str]) -> list[str]:
    return [expand(part, env) for part in [*container.get("command", []), *container.get("args", [])]]


def shell(text: str, env: dict[str, str]) -> str:
    """What `sh -c` makes of `${VAR}` and `$VAR`; every one of them must be defined."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert env.get(name), f"{name} is used by the command but not set"
        return env[name]

    return _SHELL_REF.sub(value, text)


def containers(rendered: Rendered) -> list[tuple[Object, Object, dict[str, str], list[str]]]:
    out = []
    for pod in rendered.pods:
        for container in pod["spec"]["containers"]:
            env = kubelet_env(pod, container, rendered.ips[pod["metadata"]["name"]])
            out.append((pod, container, env, argv(container, env)))
    return out


@pytest.mark.parametrize("workload", WORKLOADS)
def test_every_variable_and_label_the_commands_use_is_defined(workload: str) -> None:
    rendered = Rendered(WORKLOADS[workload]())
    for pod, container, env, args in containers(rendered):
        assert not [a for a in args if "$(" in a], f"{pod['metadata']['name']}: unexpanded {args}"
        if args[:2] == ["sh", "-c"]:
            shell(args[2], env)
        for item in container.get("env") or []:
            path = item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
            if _KEYED_FIELD.match(path):
                assert field(pod, path, ""), f"{path} is empty on {pod['metadata']['name']}"
        index = int(pod["metadata"]["labels"]["serving.phalanx.dev/pod-index"])
        assert env["LWS_WORKER_INDEX"] == str(index)
        assert env["LWS_GROUP_SIZE"] == pod["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/size"]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_leader_address_reaches_the_entry_pod_of_the_same_role_instance(workload: str) -> None:
    rendered = Rendered(WORKLOADS[workload]())
    for pod, _, env, _ in containers(rendered):
        entry_ip = rendered.ips[rendered.entry_of(pod)["metadata"]["name"]]
        assert rendered.lookup(env["LWS_LEADER_ADDRESS"], pod) == {entry_ip}
        assert rendered.lookup(env["ENTRY_ADDRESS"], pod) == {entry_ip}


def test_rendezvous_addresses_in_the_command_lines_reach_the_entry_pod() -> None:
    rendered = Rendered(sglang(), vllm_ray())
    for pod, _, env, args in containers(rendered):
        entry_ip = rendered.ips[rendered.entry_of(pod)["metadata"]["name"]]
        line = shell(args[2], env) if args[:2] == ["sh", "-c"] else " ".join(args)
        hosts = re.findall(r"--(?:dist-init-addr|head-address)[ =]([^\s:]+)", line)
        if "--cluster-size" in line:  # the Ray head: no address to reach, only the group size
            assert hosts == [] and f"--cluster-size={env['LWS_GROUP_SIZE']}" in line
            continue
        assert hosts, line
        assert all(rendered.lookup(host, pod) == {entry_ip} for host in hosts)


def test_llamacpp_leader_derives_the_names_of_its_own_workers() -> None:
    rendered = Rendered(llamacpp(), sglang())  # another ModelServing's names in the zone too
    entries = [p for p in rendered.pods if p["metadata"]["name"].startswith("llamacpp-")]
    entries = [p for p in entries if p["metadata"]["labels"]["serving.phalanx.dev/entry"] == "true"]
    assert len(entries) == 4  # 2 ServingGroups x 2 role instances
    for entry, _, env, _ in containers(rendered):
        if entry not in entries:
            continue
        hosts = llamacpp_rpc_hosts(env)
        assert len(hosts) == 4  # LWS_GROUP_SIZE 5: workers 1..4
        instance = entry["metadata"]["name"][: -len("-0")]
        for i, host in enumerate(hosts, start=1):
            assert rendered.lookup(host, entry) == {rendered.ips[f"{instance}-{i}"]}, host
        assert rendered.lookup(hosts[-1].replace("-4.", "-5.", 1), entry) == frozenset()


def test_tensorrt_group_key_selects_exactly_one_role_instance() -> None:
    rendered = Rendered(tensorrt(), sglang(), vllm_ray())  # other groups in the same namespace
    for entry, container, env, args in containers(rendered):
        if container["name"] != "leader":
            continue
        selector = tensorrt_selector([shell(a, env) for a in args])
        found = sorted(
            p["metadata"]["name"]
            for p in rendered.pods
            if kube_dns.selects(selector, p["metadata"]["labels"])
        )
        instance = entry["metadata"]["name"][: -len("-0")]
        assert found == [f"{instance}-0", f"{instance}-1"]


def test_every_pod_has_one_dns_name_of_its_own() -> None:
    rendered = Rendered(*(make() for make in WORKLOADS.values()))
    names: dict[str, str] = {}
    for pod in rendered.pods:
        spec = pod["spec"]
        fqdn = f"{spec['hostname']}.{spec['subdomain']}.{NAMESPACE}.svc.cluster.local"
        assert all(len(label) <= 63 for label in fqdn.split("."))
        assert rendered.zone[fqdn] == {rendered.ips[pod["metadata"]["name"]]}
        assert fqdn not in names, (fqdn, names.get(fqdn))
        names[fqdn] = pod["metadata"]["name"]


LWS_LABELS = (
    "leaderworkerset.sigs.k8s.io/name",
    "leaderworkerset.sigs.k8s.io/group-index",
    "leaderworkerset.sigs.k8s.io/group-key",
    "leaderworkerset.sigs.k8s.io/worker-index",
)


def test_lws_labels_keep_their_meaning() -> None:
    rendered = Rendered(sglang())
    groups: dict[str, list[Object]] = {}
    for pod in rendered.pods:
        labels = pod["metadata"]["labels"]
        assert all(key in labels for key in LWS_LABELS)
        # As Kthena's LWS integration: the LWS is the ModelServing, the group index the ServingGroup's.
        assert labels[LWS_LABELS[0]] == "sglang"
        assert labels[LWS_LABELS[1]] == labels["serving.phalanx.dev/group-index"]
        groups.setdefault(labels[LWS_LABELS[2]], []).append(pod)
    for pods in groups.values():
        # The group key picks exactly one role instance: one entry pod and its workers.
        assert len({p["metadata"]["name"].rsplit("-", 1)[0] for p in pods}) == 1
        assert sorted(p["metadata"]["labels"][LWS_LABELS[3]] for p in pods) == [
            str(i) for i in range(len(pods))
        ]
        workers = [p for p in pods if p["metadata"]["labels"][LWS_LABELS[3]] != "0"]
        leader = next(p for p in pods if p not in workers)["metadata"]["name"]
        assert all(
            p["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/leader-name"] == leader for p in workers
        )
    assert len(groups) == 4
