"""The API server's pod checks, on the templates a ModelServing renders: one broken template per rule.

The cluster tier (`tests/cluster/test_validate_agrees.py`) checks the same verdicts against the real
API server; these say which field each rule names and that the message says why and how to fix it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from phalanx.api import parse_resource
from phalanx.api.errors import only_errors
from phalanx.api.labels import INJECTED_ENV
from phalanx.api.podrules import is_env_name, is_port_name, pod_template_problems

Template = dict[str, Any]


def _template() -> Template:
    return {
        "metadata": {"labels": {"app": "llm"}, "annotations": {"example.com/owner": "team"}},
        "spec": {
            "containers": [
                {
                    "name": "engine",
                    "image": "vllm/vllm-openai:v0.11.1",
                    "ports": [{"containerPort": 8000, "name": "http"}],
                    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                    "volumeMounts": [{"name": "cache", "mountPath": "/cache", "subPath": "models"}],
                    "readinessProbe": {"httpGet": {"port": "http", "path": "/health"}},
                    "livenessProbe": {"tcpSocket": {"port": 8000}, "successThreshold": 1},
                }
            ],
            "initContainers": [
                {"name": "fetch", "image": "busybox", "volumeMounts": [{"name": "cache", "mountPath": "/c"}]}
            ],
            "volumes": [
                {"name": "cache", "emptyDir": {"sizeLimit": "16Gi"}},
                {
                    "name": "cfg",
                    "configMap": {
                        "name": "cfg",
                        "defaultMode": 0o644,
                        "items": [{"key": "k", "path": "a/b"}],
                    },
                },
            ],
        },
    }


def _container(template: Template) -> dict[str, Any]:
    container: dict[str, Any] = template["spec"]["containers"][0]
    return container


def test_a_good_template_passes() -> None:
    assert pod_template_problems(_template(), INJECTED_ENV) == []


CASES: list[tuple[str, Callable[[Template], object], tuple[Any, ...]]] = [
    (
        "mount of a missing volume",
        lambda t: _container(t)["volumeMounts"][0].update(name="models"),
        ("spec", "containers", 0, "volumeMounts", 0, "name"),
    ),
    (
        "mount path twice",
        lambda t: _container(t)["volumeMounts"].append({"name": "cfg", "mountPath": "/cache"}),
        ("spec", "containers", 0, "volumeMounts", 1, "mountPath"),
    ),
    (
        "sub path climbing out",
        lambda t: _container(t)["volumeMounts"][0].update(subPath="../x"),
        ("spec", "containers", 0, "volumeMounts", 0, "subPath"),
    ),
    (
        "init container named like a container",
        lambda t: t["spec"]["initContainers"][0].update(name="engine"),
        ("spec", "initContainers", 0, "name"),
    ),
    (
        "container name not a DNS label",
        lambda t: _container(t).update(name="Engine"),
        ("spec", "containers", 0, "name"),
    ),
    (
        "volume name not a DNS label",
        lambda t: t["spec"]["volumes"][1].update(name="my_cfg"),
        ("spec", "volumes", 1, "name"),
    ),
    (
        "two volume sources",
        lambda t: t["spec"]["volumes"][0].update(hostPath={"path": "/x"}),
        ("spec", "volumes", 0),
    ),
    (
        "negative emptyDir size",
        lambda t: t["spec"]["volumes"][0]["emptyDir"].update(sizeLimit="-1Gi"),
        ("spec", "volumes", 0, "emptyDir", "sizeLimit"),
    ),
    (
        "decimal 777 file mode",
        lambda t: t["spec"]["volumes"][1]["configMap"].update(defaultMode=777),
        ("spec", "volumes", 1, "configMap", "defaultMode"),
    ),
    (
        "config map without a name",
        lambda t: t["spec"]["volumes"][1]["configMap"].update(name=""),
        ("spec", "volumes", 1, "configMap", "name"),
    ),
    (
        "item path climbing out",
        lambda t: t["spec"]["volumes"][1]["configMap"]["items"][0].update(path="../a"),
        ("spec", "volumes", 1, "configMap", "items", 0, "path"),
    ),
    (
        "host path type unknown",
        lambda t: t["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/d", "type": "Dir"}}),
        ("spec", "volumes", 2, "hostPath", "type"),
    ),
    (
        "port name too long",
        lambda t: _container(t)["ports"][0].update(name="metrics-endpoint"),
        ("spec", "containers", 0, "ports", 0, "name"),
    ),
    (
        "port name twice",
        lambda t: _container(t)["ports"].append({"containerPort": 9000, "name": "http"}),
        ("spec", "containers", 0, "ports", 1, "name"),
    ),
    (
        "port out of range",
        lambda t: _container(t)["ports"][0].update(containerPort=70000),
        ("spec", "containers", 0, "ports", 0, "containerPort"),
    ),
    (
        "host port out of range",
        lambda t: _container(t)["ports"][0].update(hostPort=70000),
        ("spec", "containers", 0, "ports", 0, "hostPort"),
    ),
    (
        "unknown protocol",
        lambda t: _container(t)["ports"][0].update(protocol="HTTP"),
        ("spec", "containers", 0, "ports", 0, "protocol"),
    ),
    (
        "env name with '='",
        lambda t: _container(t)["env"].append({"name": "A=B", "value": "1"}),
        ("spec", "containers", 0, "env", 1, "name"),
    ),
    (
        "env value and valueFrom",
        lambda t: _container(t)["env"][0].update(value="x"),
        ("spec", "containers", 0, "env", 0, "valueFrom"),
    ),
    (
        "env valueFrom empty",
        lambda t: _container(t)["env"][0].update(valueFrom={}),
        ("spec", "containers", 0, "env", 0, "valueFrom"),
    ),
    (
        "env field not readable",
        lambda t: _container(t)["env"][0]["valueFrom"]["fieldRef"].update(fieldPath="spec.bogus"),
        ("spec", "containers", 0, "env", 0, "valueFrom", "fieldRef", "fieldPath"),
    ),
    (
        "env key with a space",
        lambda t: _container(t)["env"].append(
            {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a b"}}}
        ),
        ("spec", "containers", 0, "env", 1, "valueFrom", "secretKeyRef", "key"),
    ),
    (
        "probe without handler",
        lambda t: _container(t).update(startupProbe={"periodSeconds": 5}),
        ("spec", "containers", 0, "startupProbe"),
    ),
    (
        "probe with two handlers",
        lambda t: _container(t)["livenessProbe"].update(exec={"command": ["true"]}),
        ("spec", "containers", 0, "livenessProbe"),
    ),
    (
        "liveness success threshold 2",
        lambda t: _container(t)["livenessProbe"].update(successThreshold=2),
        ("spec", "containers", 0, "livenessProbe", "successThreshold"),
    ),
    (
        "negative probe period",
        lambda t: _container(t)["readinessProbe"].update(periodSeconds=-1),
        ("spec", "containers", 0, "readinessProbe", "periodSeconds"),
    ),
    (
        "probe port not a port",
        lambda t: _container(t)["readinessProbe"]["httpGet"].update(port="Web Port"),
        ("spec", "containers", 0, "readinessProbe", "httpGet", "port"),
    ),
    (
        "probe on a plain init container",
        lambda t: t["spec"]["initContainers"][0].update(readinessProbe={"exec": {"command": ["true"]}}),
        ("spec", "initContainers", 0, "readinessProbe"),
    ),
    (
        "unknown pull policy",
        lambda t: _container(t).update(imagePullPolicy="Sometimes"),
        ("spec", "containers", 0, "imagePullPolicy"),
    ),
    (
        "unknown restart policy",
        lambda t: t["spec"].update(restartPolicy="Sometimes"),
        ("spec", "restartPolicy"),
    ),
    ("unknown DNS policy", lambda t: t["spec"].update(dnsPolicy="Google"), ("spec", "dnsPolicy")),
    (
        "zero active deadline",
        lambda t: t["spec"].update(activeDeadlineSeconds=0),
        ("spec", "activeDeadlineSeconds"),
    ),
    (
        "annotation key with a space",
        lambda t: t["metadata"]["annotations"].update({"bad key": "v"}),
        ("metadata", "annotations", "bad key"),
    ),
    (
        "a resource without a domain that is not a standard one",
        lambda t: _container(t).update(resources={"limits": {"gpu": "1"}}),
        ("spec", "containers", 0, "resources", "limits", "gpu"),
    ),
    (
        "a node selector value with a space",
        lambda t: t["spec"].update(nodeSelector={"pool": "two words"}),
        ("spec", "nodeSelector", "pool"),
    ),
    (
        "a toleration that exists and has a value",
        lambda t: t["spec"].update(tolerations=[{"key": "gpu", "operator": "Exists", "value": "yes"}]),
        ("spec", "tolerations", 0, "value"),
    ),
    (
        "two containers taking the same host port",
        lambda t: (
            _container(t)["ports"].append({"containerPort": 80, "hostPort": 80}),
            t["spec"]["containers"].append(
                {"name": "side", "image": "busybox", "ports": [{"containerPort": 81, "hostPort": 80}]}
            ),
        ),
        ("spec", "containers", 1, "ports", 0, "hostPort"),
    ),
    (
        "host network with two containers on one container port",
        lambda t: (
            t["spec"].update(hostNetwork=True),
            t["spec"]["containers"].append(
                {"name": "side", "image": "busybox", "ports": [{"containerPort": 8000}]}
            ),
        ),
        ("spec", "containers", 1, "ports", 0, "hostPort"),
    ),
    (
        "host network with a host port unlike the container port",
        lambda t: (t["spec"].update(hostNetwork=True), _container(t)["ports"][0].update(hostPort=9000)),
        ("spec", "containers", 0, "ports", 0, "hostPort"),
    ),
]


@pytest.mark.parametrize(("case", "change", "path"), CASES, ids=[case for case, _, _ in CASES])
def test_each_rule_names_the_field_and_says_the_pods_would_be_refused(
    case: str, change: Callable[[Template], object], path: tuple[Any, ...]
) -> None:
    template = _template()
    change(template)
    problems = pod_template_problems(template, INJECTED_ENV)
    assert [p.path for p in problems] == [path], [p.render() for p in problems]
    (problem,) = problems
    assert "the API server would refuse the pods" in problem.message and problem.fix


def test_the_same_host_port_on_another_protocol_or_host_ip_is_allowed() -> None:
    template = _template()
    _container(template)["ports"].append({"containerPort": 80, "hostPort": 80})
    template["spec"]["containers"].append(
        {
            "name": "side",
            "image": "busybox",
            "ports": [
                {"containerPort": 81, "hostPort": 80, "protocol": "UDP"},
                {"containerPort": 82, "hostPort": 80, "hostIP": "127.0.0.2"},
            ],
        }
    )
    assert pod_template_problems(template, INJECTED_ENV) == []


def test_a_sidecar_init_container_may_have_probes() -> None:
    template = _template()
    template["spec"]["initContainers"][0].update(
        restartPolicy="Always", readinessProbe={"exec": {"command": ["true"]}}
    )
    assert pod_template_problems(template, INJECTED_ENV) == []


def test_env_that_phalanx_replaces_is_not_judged() -> None:
    template = _template()
    _container(template)["env"].append({"name": "ENTRY_ADDRESS", "value": "x", "valueFrom": {}})
    assert pod_template_problems(template, INJECTED_ENV) == []


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("http", True),
        ("h2c-9", True),
        ("123", False),
        ("a--b", False),
        ("-a", False),
        ("HTTP", False),
        ("a" * 16, False),
    ],
)
def test_port_names(name: str, ok: bool) -> None:
    assert is_port_name(name) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("MODEL", True),
        ("model.path", True),
        ("1ST", True),
        ("A B", True),
        ("", False),
        ("A=B", False),
        ("TAB\t", False),
        ("é", False),
    ],
)
def test_env_names_follow_the_relaxed_rule(name: str, ok: bool) -> None:
    assert is_env_name(name) is ok


def _serving_with(change: Callable[[dict[str, Any]], object]) -> list[str]:
    from tests.conftest import minimal_serving

    data = copy.deepcopy(minimal_serving())
    change(data)
    return [p.field for p in only_errors(parse_resource(data)[1])]


def test_a_worker_template_with_no_workers_renders_no_pod_and_is_not_judged_as_one() -> None:
    def no_workers(data: dict[str, Any]) -> None:
        role = data["spec"]["template"]["roles"][0]
        role["workerReplicas"] = 0
        role["workerTemplate"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "x", "mountPath": "/x"}]

    assert _serving_with(no_workers) == []


def test_every_role_template_is_checked_with_its_full_path() -> None:
    def missing_volume(data: dict[str, Any]) -> None:
        role = data["spec"]["template"]["roles"][0]
        role["entryTemplate"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "x", "mountPath": "/x"}]

    assert _serving_with(missing_volume) == [
        "spec.template.roles[0].entryTemplate.spec.containers[0].volumeMounts[0].name"
    ]


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"limits": {"nvidia.com/gpu": "500m"}}, "limits['nvidia.com/gpu']"),
        ({"requests": {"nvidia.com/gpu": 1}}, "limits"),
        ({"limits": {"nvidia.com/gpu": 1}, "requests": {"nvidia.com/gpu": 2}}, "requests['nvidia.com/gpu']"),
    ],
)
def test_extended_resources_are_whole_and_never_overcommitted(resources: dict[str, Any], field: str) -> None:
    def change(data: dict[str, Any]) -> None:
        data["spec"]["template"]["roles"][0]["entryTemplate"]["spec"]["containers"][0]["resources"] = (
            resources
        )

    prefix = "spec.template.roles[0].entryTemplate.spec.containers[0].resources"
    assert f"{prefix}.{field}" in _serving_with(change) or f"{prefix}{field}" in _serving_with(change)
