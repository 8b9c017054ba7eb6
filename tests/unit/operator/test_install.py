"""`phalanx install --render`: the install manifests as a pure function of the options.

The comparison with the Helm chart itself (`helm template`) is in tests/cluster/test_helm.py; here
the objects are checked on their own, and the chart's files that need no Helm (Chart.yaml,
values.yaml, the CRDs folder) against the renderer.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from phalanx import __version__
from phalanx.api.crd import crd_file_name, crds
from phalanx.cli import app
from phalanx.operator.install import (
    GANG_CRD_RULES,
    LEADER_RULES,
    OPERATOR_RULES,
    PLACEMENT_RULES,
    ROUTER_RULES,
    InstallError,
    InstallOptions,
    Workload,
    chart_values,
    component_name,
    default_operator,
    fullname,
    helm_set_flags,
    render,
    split_image,
)
from phalanx.operator.manager import OperatorOptions

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "phalanx"

Object = dict[str, Any]


def by_kind_and_name(objects: list[Object]) -> dict[tuple[str, str], Object]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def container(objects: list[Object], name: str) -> Object:
    deployment = by_kind_and_name(objects)[("Deployment", name)]
    containers: list[Object] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def rules(objects: list[Object], kind: str, name: str) -> list[Object]:
    found: list[Object] = by_kind_and_name(objects)[(kind, name)]["rules"]
    return found


DEFAULT = render(InstallOptions())


# ------------------------------------------------------------------------------------------- objects


def test_default_objects_in_an_order_kubectl_can_create_them_in() -> None:
    assert [(o["kind"], o["metadata"]["name"]) for o in DEFAULT] == [
        ("Namespace", "phalanx-system"),
        ("CustomResourceDefinition", "modelservings.serving.phalanx.dev"),
        ("CustomResourceDefinition", "modeldeployments.serving.phalanx.dev"),
        ("CustomResourceDefinition", "autoscalingpolicies.serving.phalanx.dev"),
        ("ServiceAccount", "phalanx-operator"),
        ("ServiceAccount", "phalanx-router"),
        ("ClusterRole", "phalanx-operator"),
        ("ClusterRole", "phalanx-operator-gang-apis"),
        ("ClusterRole", "phalanx-router"),
        ("ClusterRoleBinding", "phalanx-operator"),
        ("ClusterRoleBinding", "phalanx-operator-gang-apis"),
        ("ClusterRoleBinding", "phalanx-router"),
        ("Role", "phalanx-operator-leader-election"),
        ("RoleBinding", "phalanx-operator-leader-election"),
        ("Service", "phalanx-router"),
        ("Deployment", "phalanx-operator"),
        ("Deployment", "phalanx-router"),
    ]
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in DEFAULT:
        assert ("namespace" in obj["metadata"]) == (obj["kind"] not in cluster_scoped), obj["metadata"]
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == "phalanx-system"


def test_the_crds_are_the_generated_ones() -> None:
    rendered = [o for o in DEFAULT if o["kind"] == "CustomResourceDefinition"]
    assert rendered == crds()
    without = render(InstallOptions(crds=False, create_namespace=False))
    assert {o["kind"] for o in without}.isdisjoint({"CustomResourceDefinition", "Namespace"})


def test_render_does_not_share_state_between_calls() -> None:
    first = render(InstallOptions())
    first[1]["spec"]["names"]["kind"] = "Changed"
    container(first, "phalanx-operator")["resources"]["limits"]["memory"] = "1Ti"
    assert render(InstallOptions()) == DEFAULT
    assert crds()[0]["spec"]["names"]["kind"] == "ModelServing"


def test_every_object_carries_the_standard_labels() -> None:
    for obj in DEFAULT:
        if obj["kind"] in ("Namespace", "CustomResourceDefinition"):
            continue
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "phalanx"
        assert labels["app.kubernetes.io/instance"] == "phalanx"
        assert labels["app.kubernetes.io/version"] == __version__
        assert labels["app.kubernetes.io/component"] in ("operator", "router")
        assert labels["helm.sh/chart"] == f"phalanx-{__version__}"


# ---------------------------------------------------------------------------------------------- RBAC


def test_operator_cluster_role_is_exactly_what_the_operator_uses() -> None:
    assert rules(DEFAULT, "ClusterRole", "phalanx-operator") == [
        {
            "apiGroups": ["serving.phalanx.dev"],
            "resources": ["modelservings"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        },
        {"apiGroups": ["serving.phalanx.dev"], "resources": ["modelservings/status"], "verbs": ["patch"]},
        {
            "apiGroups": ["serving.phalanx.dev"],
            "resources": ["modeldeployments"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["serving.phalanx.dev"], "resources": ["modeldeployments/status"], "verbs": ["patch"]},
        {
            "apiGroups": ["serving.phalanx.dev"],
            "resources": ["autoscalingpolicies"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["serving.phalanx.dev"],
            "resources": ["autoscalingpolicies/status"],
            "verbs": ["patch"],
        },
        {
            "apiGroups": ["serving.phalanx.dev"],
            "resources": ["modelservings/finalizers", "modeldeployments/finalizers"],
            "verbs": ["update"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": ["list", "watch", "create", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {
            "apiGroups": ["apps"],
            "resources": ["controllerrevisions"],
            "verbs": ["list", "watch", "create", "delete"],
        },
        {
            "apiGroups": ["scheduling.volcano.sh"],
            "resources": ["podgroups"],
            "verbs": ["list", "watch", "create", "patch", "delete"],
        },
        {
            "apiGroups": ["scheduling.x-k8s.io"],
            "resources": ["podgroups"],
            "verbs": ["list", "watch", "create", "patch", "delete"],
        },
    ]
    assert rules(DEFAULT, "ClusterRole", "phalanx-operator-gang-apis") == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["podgroups.scheduling.volcano.sh", "podgroups.scheduling.x-k8s.io"],
            "verbs": ["watch"],
        }
    ]


def test_no_rule_grants_a_wildcard_secrets_or_nodes_beyond_listing_them() -> None:
    for obj in render(InstallOptions(operator_placement=True)):
        for rule in obj.get("rules", []):
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (obj["metadata"]["name"], rule)
            assert not {"secrets", "configmaps"} & set(rule["resources"])
            if "nodes" in rule["resources"]:
                assert obj["metadata"]["name"] == "phalanx-operator-placement"
                assert rule["verbs"] == ["list"]
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])


def test_the_placement_role_is_asked_for_and_only_lists_nodes_and_pods_cluster_wide() -> None:
    assert not any("placement" in o["metadata"]["name"] for o in DEFAULT)
    placing = render(InstallOptions(operator_placement=True))
    assert rules(placing, "ClusterRole", "phalanx-operator-placement") == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]
    # Nodes are cluster-scoped and a node's pods come from every namespace: bound cluster-wide
    # even when the operator watches one namespace.
    objects = by_kind_and_name(render(InstallOptions(watch_namespace="models", operator_placement=True)))
    assert objects[("ClusterRoleBinding", "phalanx-operator-placement")]["roleRef"]["name"] == (
        "phalanx-operator-placement"
    )
    assert helm_set_flags(InstallOptions(operator_placement=True)) == [
        "--set-json",
        "operator.placement=true",
    ]


def test_leader_election_is_one_lease_in_the_release_namespace() -> None:
    role = by_kind_and_name(DEFAULT)[("Role", "phalanx-operator-leader-election")]
    assert role["metadata"]["namespace"] == "phalanx-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [OperatorOptions.lease_name],
            "verbs": ["get", "update"],
        },
    ]
    binding = by_kind_and_name(DEFAULT)[("RoleBinding", "phalanx-operator-leader-election")]
    assert binding["metadata"]["namespace"] == "phalanx-system"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "phalanx-operator-leader-election",
    }


def test_router_role_is_read_only() -> None:
    assert rules(DEFAULT, "ClusterRole", "phalanx-router") == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": ["serving.phalanx.dev"], "resources": ["modelservings"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        {"apiGroups": ["serving.phalanx.dev"], "resources": ["autoscalingpolicies"], "verbs": ["list"]},
    ]


def test_bindings_give_each_service_account_its_own_roles() -> None:
    objects = by_kind_and_name(DEFAULT)
    for name, role in (
        ("phalanx-operator", "phalanx-operator"),
        ("phalanx-operator-gang-apis", "phalanx-operator-gang-apis"),
        ("phalanx-router", "phalanx-router"),
    ):
        binding = objects[("ClusterRoleBinding", name)]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role,
        }
        account = "phalanx-router" if "router" in name else "phalanx-operator"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "phalanx-system"}
        ]
    for deployment in ("phalanx-operator", "phalanx-router"):
        spec = objects[("Deployment", deployment)]["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == deployment
        assert ("ServiceAccount", deployment) in objects


def test_a_watch_namespace_grants_the_namespaced_rules_there_only() -> None:
    objects = by_kind_and_name(render(InstallOptions(watch_namespace="models")))
    for name in ("phalanx-operator", "phalanx-router"):
        assert ("ClusterRoleBinding", name) not in objects
        binding = objects[("RoleBinding", name)]
        assert binding["metadata"]["namespace"] == "models"
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["subjects"][0]["namespace"] == "phalanx-system"
    # CRDs are cluster-scoped: a RoleBinding could not grant the watch on them.
    assert ("ClusterRoleBinding", "phalanx-operator-gang-apis") in objects
    assert "--namespace" in container(list(objects.values()), "phalanx-operator")["args"]
    assert container(list(objects.values()), "phalanx-router")["args"][-2:] == ["--namespace", "models"]


def test_docs_list_every_rule_with_its_reason() -> None:
    lines = set((ROOT / "docs" / "install.md").read_text().splitlines())
    for rule in (*OPERATOR_RULES, *GANG_CRD_RULES, *PLACEMENT_RULES, *LEADER_RULES, *ROUTER_RULES):
        resources = ", ".join(f"`{r}`" for r in rule.resources)
        if rule.resource_names:
            resources += " (only " + ", ".join(f"`{n}`" for n in rule.resource_names) + ")"
        row = f"| `{rule.api_group or 'core'}` | {resources} | {', '.join(rule.verbs)} | {rule.why} |"
        assert row in lines, f"docs/install.md lacks the row {row}"


# --------------------------------------------------------------------------------------- deployments


def test_operator_deployment() -> None:
    objects = by_kind_and_name(DEFAULT)
    deployment = objects[("Deployment", "phalanx-operator")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    operator = container(DEFAULT, "phalanx-operator")
    assert operator["image"] == f"phalanx:{__version__}"
    assert operator["command"] == ["phalanx"]
    assert operator["args"] == [
        "operator", "--lease-namespace", "$(POD_NAMESPACE)", "--health-port", "8081", "--workers", "2",
        "--router-metrics-url", "http://phalanx-router.phalanx-system.svc:8000/metrics",
    ]  # fmt: skip
    assert operator["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    ]
    assert operator["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8081"
    assert OperatorOptions.health_port == 8081
    assert set(operator["resources"]) == {"requests", "limits"}


@pytest.mark.parametrize("name", ["phalanx-operator", "phalanx-router"])
def test_pods_meet_the_restricted_pod_security_standard(name: str) -> None:
    spec = by_kind_and_name(DEFAULT)[("Deployment", name)]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for ctr in spec["containers"]:
        assert ctr["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]  # the only writable path
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert "hostNetwork" not in spec and "hostPID" not in spec


def test_router_deployment_and_service() -> None:
    objects = by_kind_and_name(DEFAULT)
    router = container(DEFAULT, "phalanx-router")
    assert router["args"] == ["router", "--host", "0.0.0.0", "--port", "8000"]
    assert router["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert router["livenessProbe"]["tcpSocket"] == {"port": "http"}
    service = objects[("Service", "phalanx-router")]
    deployment = objects[("Deployment", "phalanx-router")]
    assert deployment["spec"]["replicas"] == 2
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    # The operator's pods are not selected by the router's Service, nor the other way round.
    operator_labels = objects[("Deployment", "phalanx-operator")]["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= operator_labels.items()


def test_the_container_arguments_are_options_of_the_real_commands() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("phalanx-operator", "phalanx-router"):
        args = container(render(InstallOptions(watch_namespace="models")), name)["args"]
        command = commands[args[0]]
        known = {opt for param in command.params for opt in param.opts}
        flags = [arg for arg in args[1:] if arg.startswith("--")]
        assert flags and set(flags) <= known, (args[0], set(flags) - known)


def test_values_reach_the_objects() -> None:
    options = InstallOptions(
        release="demo",
        namespace="serving",
        image_repository="registry.example:5000/team/phalanx",
        image_tag="1.2.3",
        image_pull_policy="Always",
        image_pull_secrets=("pull",),
        labels={"team": "ml"},
        operator=Workload(
            replicas=3,
            resources={"requests": {"cpu": "1"}},
            node_selector={"pool": "system"},
            tolerations=({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},),
            affinity={"podAntiAffinity": {}},
        ),
        operator_workers=4,
        router=replace(default_operator(), replicas=0),
        service_type="NodePort",
        service_port=9000,
    )
    objects = render(options)
    named = by_kind_and_name(objects)
    assert ("Namespace", "serving") in named
    operator = named[("Deployment", "demo-phalanx-operator")]
    spec = operator["spec"]["template"]["spec"]
    assert operator["spec"]["replicas"] == 3
    assert spec["containers"][0]["image"] == "registry.example:5000/team/phalanx:1.2.3"
    assert spec["containers"][0]["imagePullPolicy"] == "Always"
    assert spec["containers"][0]["resources"] == {"requests": {"cpu": "1"}}
    assert spec["containers"][0]["args"][-4:] == [
        "--workers", "4", "--router-metrics-url", "http://demo-phalanx-router.serving.svc:9000/metrics"
    ]  # fmt: skip
    assert spec["imagePullSecrets"] == [{"name": "pull"}]
    assert spec["nodeSelector"] == {"pool": "system"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["affinity"] == {"podAntiAffinity": {}}
    assert named[("Deployment", "demo-phalanx-router")]["spec"]["replicas"] == 0
    assert named[("Service", "demo-phalanx-router")]["spec"]["type"] == "NodePort"
    assert named[("Service", "demo-phalanx-router")]["spec"]["ports"][0]["port"] == 9000
    for obj in objects:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition"):
            assert obj["metadata"]["labels"]["team"] == "ml"
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
            assert obj["metadata"].get("namespace", "serving") == "serving"
    assert named[("ClusterRoleBinding", "demo-phalanx-operator")]["subjects"][0]["namespace"] == "serving"
    # The selector stays the standard labels only: extra labels may change without a new Deployment.
    assert "team" not in operator["spec"]["selector"]["matchLabels"]
    # Empty settings stay out of the pod spec, as the chart's `with` blocks leave them out.
    router_spec = named[("Deployment", "demo-phalanx-router")]["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity"} & set(router_spec)


def test_without_the_router() -> None:
    objects = render(InstallOptions(router_enabled=False))
    assert [
        o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "router"
    ] == []
    assert ("Deployment", "phalanx-operator") in by_kind_and_name(objects)


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("phalanx", "phalanx"),
        ("my-phalanx", "my-phalanx"),
        ("demo", "demo-phalanx"),
        ("a" * 53, ("a" * 53 + "-phalanx")[:63]),
        ("a" * 54 + "-", ("a" * 54 + "--phalanx")[:63].removesuffix("-")),
    ],
)
def test_fullname_follows_helms_convention(release: str, expected: str) -> None:
    assert fullname(release) == expected


def test_bad_options_are_all_reported_at_once() -> None:
    options = InstallOptions(
        release="Demo",
        namespace="",
        watch_namespace="Models",
        image_repository="with space",
        image_tag="bad tag",
        image_pull_policy="Sometimes",
        labels={"app.kubernetes.io/name": "x", "bad key!": "v"},
        operator=replace(default_operator(), replicas=-1),
        operator_workers=0,
        service_type="Ingress",
        service_port=0,
    )
    with pytest.raises(InstallError) as caught:
        render(options)
    problems = caught.value.problems
    expected = [
        "release name 'Demo'",
        "namespace ''",
        "watch namespace 'Models'",
        "image repository 'with space'",
        "image tag 'bad tag'",
        "image pull policy 'Sometimes'",
        "label 'app.kubernetes.io/name'",
        "label bad key!=",
        "operator replicas -1",
        "operator workers 0",
        "service type 'Ingress'",
        "service port 0",
    ]
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("phalanx", ("phalanx", "")),
        ("phalanx:1.0", ("phalanx", "1.0")),
        ("registry:5000/team/phalanx", ("registry:5000/team/phalanx", "")),
        ("registry:5000/team/phalanx:v2", ("registry:5000/team/phalanx", "v2")),
    ],
)
def test_split_image(image: str, expected: tuple[str, str]) -> None:
    assert split_image(image) == expected


# ------------------------------------------------------------------------------------ the chart's files


def test_chart_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["name"] == "phalanx"
    assert chart["version"] == chart["appVersion"] == __version__


def test_values_yaml_is_the_default_options() -> None:
    assert yaml.safe_load((CHART / "values.yaml").read_text()) == chart_values(InstallOptions())


def test_chart_crds_are_the_generated_files() -> None:
    on_disk = {p.name: yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))}
    assert on_disk == {crd_file_name(crd): crd for crd in crds()}


def test_helm_flags_carry_only_what_differs_from_the_defaults() -> None:
    assert helm_set_flags(InstallOptions()) == []
    options = InstallOptions(
        watch_namespace="models",
        labels={"example.com/team": "ml"},
        operator=replace(default_operator(), replicas=3),
        router_enabled=False,
        image_pull_secrets=("pull",),
    )
    assert helm_set_flags(options) == [
        "--set-json", 'imagePullSecrets=["pull"]',
        "--set-string", "watchNamespace=models",
        "--set-string", "commonLabels.example\\.com/team=ml",
        "--set-json", "operator.replicas=3",
        "--set-json", "router.enabled=false",
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ CLI


def phalanx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_render_prints_the_objects_as_yaml() -> None:
    result = phalanx(
        "install", "--render", "-n", "serving", "--name", "demo", "--image", "reg:5000/phalanx:9",
        "--watch-namespace", "models", "--operator-replicas", "3", "--router-replicas", "1", "--no-crds",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    options = InstallOptions(
        release="demo",
        namespace="serving",
        image_repository="reg:5000/phalanx",
        image_tag="9",
        watch_namespace="models",
        operator=replace(InstallOptions().operator, replicas=3),
        router=replace(InstallOptions().router, replicas=1),
        crds=False,
    )
    assert list(yaml.safe_load_all(result.stdout)) == render(options)


def test_cli_without_render_says_how_to_apply_and_changes_nothing() -> None:
    result = phalanx("install", "--watch-namespace", "models")
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        "phalanx install --render --watch-namespace models | kubectl apply --server-side -f -"
        in result.stderr
    )
    assert (
        "helm install phalanx deploy/helm/phalanx --namespace phalanx-system --create-namespace "
        "--set-string watchNamespace=models" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_cli_rejects_bad_options_without_a_traceback() -> None:
    result = phalanx("install", "--render", "--name", "Demo", "--image-pull-policy", "Sometimes")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error: release name 'Demo'" in result.stderr
    assert "error: image pull policy 'Sometimes'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_api_keys_secret_is_mounted_read_only_and_passed_to_the_router() -> None:
    named = by_kind_and_name(render(InstallOptions(router_api_keys_secret="router-keys")))
    spec = named[("Deployment", "phalanx-router")]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["args"][-2:] == ["--api-keys", "/etc/phalanx/api-keys"]
    assert {"name": "api-keys", "mountPath": "/etc/phalanx/api-keys", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "api-keys", "secret": {"secretName": "router-keys"}} in spec["volumes"]
    # Mounted by the kubelet: the router's role still grants nothing on Secrets.
    rules = named[("ClusterRole", "phalanx-router")]["rules"]
    assert all("secrets" not in rule["resources"] for rule in rules)
    without = by_kind_and_name(render(InstallOptions()))[("Deployment", "phalanx-router")]
    assert "--api-keys" not in without["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_operator_reads_the_routers_service_unless_told_another_page_or_without_a_router() -> None:
    def args(options: InstallOptions) -> list[str]:
        return list(container(render(options), component_name(options.release, "operator"))["args"])

    given = "http://metrics.example:9090/router"
    assert args(InstallOptions(operator_router_metrics_url=given))[-2:] == ["--router-metrics-url", given]
    assert "--router-metrics-url" not in args(InstallOptions(router_enabled=False))
    told = InstallOptions(router_enabled=False, operator_router_metrics_url=given)
    assert args(told)[-2:] == ["--router-metrics-url", given]
    assert helm_set_flags(told) == [
        "--set-string", f"operator.routerMetricsUrl={given}", "--set-json", "router.enabled=false"
    ]  # fmt: skip
    with pytest.raises(InstallError) as caught:
        render(InstallOptions(operator_router_metrics_url="router:8000/metrics"))
    assert any("router metrics URL 'router:8000/metrics'" in p for p in caught.value.problems)


def test_a_bad_secret_name_is_refused() -> None:
    with pytest.raises(InstallError) as caught:
        render(InstallOptions(router_api_keys_secret="Bad_Name"))
    assert any("router API keys Secret" in problem for problem in caught.value.problems)


# ---------------------------------------------------------------------------------------- monitoring

MONITORING = InstallOptions(dashboards=True, alert_rules=True, scrape=True, crds=False)


def monitoring_kinds(objects: list[Object]) -> list[tuple[str, str]]:
    kinds = ("ConfigMap", "PrometheusRule", "ServiceMonitor", "PodMonitor")
    return [(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in kinds]


def test_monitoring_is_off_by_default_and_each_part_on_with_one_option() -> None:
    assert monitoring_kinds(DEFAULT) == []
    assert monitoring_kinds(render(InstallOptions(dashboards=True))) == [
        ("ConfigMap", "phalanx-dashboard-router"),
        ("ConfigMap", "phalanx-dashboard-engines"),
        ("ConfigMap", "phalanx-dashboard-rollouts"),
    ]
    assert monitoring_kinds(render(InstallOptions(alert_rules=True))) == [
        ("PrometheusRule", "phalanx-alerts")
    ]
    assert monitoring_kinds(render(InstallOptions(scrape=True))) == [
        ("ServiceMonitor", "phalanx-router"),
        ("PodMonitor", "phalanx-operator"),
        ("PodMonitor", "phalanx-engines"),
    ]


def test_dashboards_are_the_shipped_files_with_the_sidecar_label() -> None:
    maps = [o for o in render(MONITORING) if o["kind"] == "ConfigMap"]
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((file_name, text),) = cm["data"].items()
        assert text == (ROOT / "deploy" / "grafana" / file_name).read_text()
    custom = render(replace(MONITORING, dashboard_label="example.com/dash", dashboard_label_value="yes"))
    labels = [o["metadata"]["labels"] for o in custom if o["kind"] == "ConfigMap"]
    assert all(lab["example.com/dash"] == "yes" and "grafana_dashboard" not in lab for lab in labels)


def test_alert_rules_are_the_shipped_rules_file() -> None:
    (rule,) = [o for o in render(MONITORING) if o["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
    assert rule["spec"] == {"groups": shipped["groups"]}


def test_scrape_objects_set_the_job_names_the_rules_select() -> None:
    objects = by_kind_and_name(render(MONITORING))
    router = objects[("ServiceMonitor", "phalanx-router")]["spec"]
    assert router["selector"]["matchLabels"] == objects[("Service", "phalanx-router")]["spec"]["selector"]
    assert router["endpoints"][0]["port"] == "http"
    operator = objects[("PodMonitor", "phalanx-operator")]["spec"]
    pod_labels = objects[("Deployment", "phalanx-operator")]["spec"]["template"]["metadata"]["labels"]
    assert operator["selector"]["matchLabels"].items() <= pod_labels.items()
    assert operator["podMetricsEndpoints"][0]["port"] == "health"
    engines = objects[("PodMonitor", "phalanx-engines")]["spec"]
    assert engines["selector"] == {"matchLabels": {"serving.phalanx.dev/entry": "true"}}
    assert engines["namespaceSelector"] == {"any": True}
    relabel = engines["podMetricsEndpoints"][0]["relabelings"]
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_serving_phalanx_dev_pd_role"],
        "targetLabel": "pd_role",
    } in relabel
    jobs = {
        endpoint["relabelings"][0]["replacement"]
        for spec in (router, operator, engines)
        for endpoint in spec.get("endpoints", spec.get("podMetricsEndpoints", []))
    }
    assert jobs == {"phalanx-router", "phalanx-operator", "phalanx-engine"}
    rules_text = (ROOT / "deploy" / "prometheus" / "rules.yaml").read_text()
    assert 'job="phalanx-engine"' in rules_text


def test_scrape_follows_the_watch_namespace_and_the_router() -> None:
    objects = render(replace(MONITORING, watch_namespace="models", router_enabled=False))
    monitors = by_kind_and_name(objects)
    assert ("ServiceMonitor", "phalanx-router") not in monitors
    engines = monitors[("PodMonitor", "phalanx-engines")]["spec"]
    assert engines["namespaceSelector"] == {"matchNames": ["models"]}


def test_bad_monitoring_options_are_all_reported() -> None:
    bad = replace(
        MONITORING, dashboard_label="not a key", dashboard_label_value="-", engine_metrics_port="Port 1"
    )
    with pytest.raises(InstallError) as caught:
        render(bad)
    assert len(caught.value.problems) == 3
    assert any("dashboard label 'not a key'" in p for p in caught.value.problems)
    assert any("engine metrics port 'Port 1'" in p for p in caught.value.problems)


def test_cli_renders_the_monitoring_objects() -> None:
    result = phalanx(
        "install", "--render", "--no-crds", "--dashboards", "--dashboard-label", "team/dash=on",
        "--alert-rules", "--scrape", "--engine-metrics-port", "metrics",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    options = replace(
        MONITORING, dashboard_label="team/dash", dashboard_label_value="on", engine_metrics_port="metrics"
    )
    assert list(yaml.safe_load_all(result.stdout)) == render(options)


def test_without_the_shipped_files_monitoring_is_an_install_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An installed package has no deploy/ folder: the options say so, no traceback."""
    monkeypatch.setattr("phalanx.operator.install.DEPLOY", tmp_path)
    assert render(InstallOptions(scrape=True))  # scrape objects need no file
    for options in (InstallOptions(dashboards=True), InstallOptions(alert_rules=True)):
        with pytest.raises(InstallError, match="render from a Phalanx source checkout"):
            render(options)
