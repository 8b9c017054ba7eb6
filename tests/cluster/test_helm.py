"""The Helm chart and `phalanx install --render`, on the real control plane.

- `helm lint` and `helm template` pass; `helm template` renders exactly the objects of
  `phalanx install --render` with the matching options (the defaults, and every value changed);
  the chart's values schema rejects what the renderer rejects.
- `helm install` works on the cluster: CRDs established, the RBAC objects, Services and Deployments
  there (the Deployments' pods run on KWOK nodes: Ready in the API, no real process behind them);
  `helm uninstall` removes them and keeps the CRDs.
- The operator runs with exactly the chart's permissions, as the API server enforces them: a token
  of the chart's ServiceAccount, a ModelServing and a ModelDeployment reconciled to available, no
  request of the operator (or of the router, with its own account) denied — checked in the API
  server's audit log, on a control plane that also enforces owner-reference permissions — while
  the same token is denied what the role leaves out. With a watch namespace, the namespaced rules
  hold in that namespace only, and the operator needs nothing more.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from phalanx.kube.resources import ModelDeploymentResource, ModelServingResource
from phalanx.operator.install import (
    InstallOptions,
    Workload,
    chart_values,
    default_operator,
    default_router,
    helm_set_flags,
    render,
)
from tests.cluster.controlplane import (
    ControlPlane,
    locate_binaries,
    operator_process,
    running_control_plane,
    wait_for,
)
from tests.cluster.routers import endpoints, routable_in, router_process
from tests.cluster.servings import pool_nodes, small_serving, status_of

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "phalanx"
RELEASE_NAMESPACE = "phalanx-system"
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:phalanx-operator"
ROUTER_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:phalanx-router"
# A second release that watches one namespace.
SCOPED = InstallOptions(release="scoped", namespace="phalanx-scoped", router_enabled=False)
SCOPED_USER = f"system:serviceaccount:{SCOPED.namespace}:scoped-phalanx-operator"

Object = dict[str, Any]
Helm = Callable[..., subprocess.CompletedProcess[str]]


# ------------------------------------------------------------------------------------------------ helm


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    """`helm(*args)`: the helm built by hack/control-plane/build.sh, with its own config dirs."""
    binary = locate_binaries().get("helm")
    if binary is None:
        pytest.skip("helm is not built; build it with `hack/control-plane/build.sh helm`")
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    yield run


def parse(text: str) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def keyed(objects: list[Object]) -> dict[tuple[str, str, str, str], Object]:
    keys = [
        (o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        for o in objects
    ]
    assert len(set(keys)) == len(keys), "an object is rendered twice"
    return dict(zip(keys, objects, strict=True))


def assert_same_objects(helm_objects: list[Object], ours: list[Object]) -> None:
    """Equal as parsed objects, each difference shown as a YAML diff of that object."""
    theirs, mine = keyed(helm_objects), keyed(ours)
    assert sorted(theirs) == sorted(mine)
    for key, obj in theirs.items():
        if obj != mine[key]:
            diff = difflib.unified_diff(
                yaml.safe_dump(obj).splitlines(),
                yaml.safe_dump(mine[key]).splitlines(),
                "helm",
                "render",
                lineterm="",
            )
            raise AssertionError(f"{key} differs:\n" + "\n".join(diff))


def changed_options() -> InstallOptions:
    """Every value away from its default."""
    return InstallOptions(
        release="demo",
        namespace="serving-system",
        image_repository="registry.example:5000/team/phalanx",
        image_tag="1.2.3",
        image_pull_policy="Always",
        image_pull_secrets=("pull-a", "pull-b"),
        watch_namespace="models",
        labels={"team": "ml", "example.com/cost-centre": "42"},
        operator=Workload(
            replicas=3,
            resources={"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"memory": "2Gi"}},
            node_selector={"node-role.kubernetes.io/control": "true"},
            tolerations=(
                {"key": "dedicated", "operator": "Equal", "value": "control", "effect": "NoSchedule"},
            ),
            affinity={
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
                            },
                        }
                    ]
                }
            },
        ),
        operator_workers=5,
        router=replace(default_router(), replicas=4, node_selector={"pool": "edge"}),
        service_type="LoadBalancer",
        service_port=443,
        router_api_keys_secret="router-keys",
        dashboards=True,
        dashboard_label="example.com/dashboard",
        dashboard_label_value="phalanx",
        alert_rules=True,
        scrape=True,
        engine_metrics_port="metrics",
    )


def test_helm_lint_passes(helm: Helm, tmp_path: Path) -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(changed_options())))
    helm("lint", "--strict", str(CHART), "-f", str(values))


def test_helm_template_renders_what_phalanx_install_renders(helm: Helm) -> None:
    result = helm("template", "phalanx", str(CHART), "--namespace", RELEASE_NAMESPACE, "--include-crds")
    cli = subprocess.run(
        [sys.executable, "-m", "phalanx", "install", "--render", "--no-create-namespace"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # Helm creates namespaces with its own --create-namespace flag, not from a template.
    assert_same_objects(parse(result.stdout), parse(cli.stdout))
    assert_same_objects(parse(result.stdout), render(InstallOptions(create_namespace=False)))


def test_helm_template_with_every_value_changed(helm: Helm) -> None:
    """Through the `--set-*` flags `phalanx install` suggests: they also remove the defaults the
    options leave out (operator.resources.limits.cpu), which Helm would otherwise merge back in."""
    options = changed_options()
    flags = helm_set_flags(options)
    assert "operator.resources.limits.cpu=null" in flags
    result = helm("template", options.release, str(CHART), "-n", options.namespace, "--include-crds", *flags)
    assert_same_objects(parse(result.stdout), render(replace(options, create_namespace=False)))
    # Without the router and the CRDs (Helm leaves them out of `template` unless --include-crds).
    options = replace(options, router_enabled=False)
    result = helm("template", options.release, str(CHART), "-n", options.namespace, *helm_set_flags(options))
    assert_same_objects(parse(result.stdout), render(replace(options, crds=False, create_namespace=False)))


def test_a_values_file_of_the_options_renders_them(helm: Helm, tmp_path: Path) -> None:
    """`chart_values` as a values file: the maps it gives are merged into the chart's defaults, so
    here the operator keeps its default resources (a values file cannot leave a default key out)."""
    changed = changed_options()
    options = replace(changed, operator=replace(changed.operator, resources=default_operator().resources))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(options)))
    result = helm("template", options.release, str(CHART), "-n", options.namespace, "-f", str(values))
    assert_same_objects(parse(result.stdout), render(replace(options, crds=False, create_namespace=False)))


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (("--set-json", "operator.replicas=-1"), "/operator/replicas"),
        (("--set-string", "image.pullPolicy=Sometimes"), "/image/pullPolicy"),
        (("--set-string", "watchNamespace=Models"), "/watchNamespace"),
        (("--set-string", "commonLabels.app\\.kubernetes\\.io/name=x"), "'app.kubernetes.io/name'"),
        (("--set-json", "router.service.port=0"), "/router/service/port"),
        (("--set-json", "operator.replica=3"), "replica"),
        (("--set-string", "monitoring.scrape.enginePort=Not A Port"), "/monitoring/scrape/enginePort"),
    ],
)
def test_the_values_schema_rejects_bad_values(helm: Helm, flags: tuple[str, ...], complaint: str) -> None:
    result = helm("template", "phalanx", str(CHART), *flags, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr


# ------------------------------------------------------------------------------------- helm install


def test_helm_install_and_uninstall(helm: Helm, control_plane: ControlPlane) -> None:
    cp = control_plane
    client = cp.client()
    # Somewhere for the Deployments' pods to go: KWOK marks them Running and Ready; nothing runs.
    cp.add_gpu_node(f"helm-{uuid.uuid4().hex[:8]}", gpus=0)
    kube = ("--kubeconfig", str(cp.kubeconfig))
    helm(
        "install",
        "phalanx",
        str(CHART),
        "-n",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
        *kube,
    )
    expected = render(InstallOptions(create_namespace=False))
    for obj in expected:
        kind, meta = obj["kind"], obj["metadata"]
        live = client.get(type(from_dict(obj)), meta["name"], namespace=meta.get("namespace")).to_dict()
        if kind == "CustomResourceDefinition":
            conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
            assert conditions["Established"] == "True", meta["name"]
        elif kind in ("ClusterRole", "Role"):
            assert live["rules"] == obj["rules"]
        elif kind.endswith("Binding"):
            assert (live["roleRef"], live["subjects"]) == (obj["roleRef"], obj["subjects"])
        else:
            assert obj["metadata"]["labels"].items() <= live["metadata"]["labels"].items()
    for name in ("phalanx-operator", "phalanx-router"):
        deployment = client.get(Deployment, name, namespace=RELEASE_NAMESPACE)
        assert deployment.status is not None and deployment.status.availableReplicas == 2
    status = json.loads(helm("status", "phalanx", "-n", RELEASE_NAMESPACE, "-o", "json", *kube).stdout)
    assert status["info"]["status"] == "deployed"
    assert "kubectl -n phalanx-system port-forward svc/phalanx-router 8000:8000" in status["info"]["notes"]

    helm("uninstall", "phalanx", "-n", RELEASE_NAMESPACE, "--wait", *kube)
    assert not list(client.list(Deployment, namespace=RELEASE_NAMESPACE))
    with pytest.raises(ApiError) as gone:
        client.get(ClusterRole, "phalanx-operator")
    assert gone.value.status.code == 404
    assert client.get(CustomResourceDefinition, "modelservings.serving.phalanx.dev")  # CRDs stay


# ------------------------------------------------------------------- the operator with the chart's RBAC


@pytest.fixture(scope="module")
def strict_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Path]]:
    """A control plane of this module's own: it audits every request of the chart's two
    ServiceAccounts, and enforces owner-reference permissions (as OpenShift does), which the
    session's control plane does not."""
    audit = tmp_path_factory.mktemp("audit")
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "users": [OPERATOR_USER, ROUTER_USER, SCOPED_USER]},
            {"level": "None"},
        ],
    }
    (audit / "policy.yaml").write_text(yaml.safe_dump(policy))
    args = (
        f"--audit-policy-file={audit / 'policy.yaml'}",
        f"--audit-log-path={audit / 'audit.log'}",
        "--audit-log-format=json",
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
    )
    with running_control_plane(apiserver_args=args) as cp:
        yield cp, audit / "audit.log"


def server_side_apply(client: Client, objects: list[Object]) -> None:
    """What `kubectl apply --server-side -f -` does with the rendered stream."""
    for obj in objects:
        client.apply(from_dict(obj), field_manager="phalanx-install-test", force=True)
        if obj["kind"] == "CustomResourceDefinition":

            def established(name: str = obj["metadata"]["name"]) -> bool:
                crd = client.get(CustomResourceDefinition, name).to_dict()
                return any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in crd.get("status", {}).get("conditions", [])
                )

            wait_for(f"CRD {obj['metadata']['name']} Established", established, timeout=60)


def token_kubeconfig(
    cp: ControlPlane, account: str, path: Path, namespace: str = RELEASE_NAMESPACE
) -> tuple[Path, str]:
    return cp.service_account_kubeconfig(namespace, account, path)


def audited(log: Path, user: str) -> list[Object]:
    """The audit events of `user`'s own clients (not the test's urllib calls made with its token)."""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return [
        e
        for e in events
        if e["user"]["username"] == user and not e.get("userAgent", "").startswith("Python-urllib")
    ]


def requests_made(events: list[Object]) -> set[str]:
    made = set()
    for event in events:
        ref = event.get("objectRef") or {}
        resource = "/".join(
            filter(None, (ref.get("apiGroup") or "core", ref.get("resource"), ref.get("subresource")))
        )
        made.add(f"{event['verb']} {resource}")
    return made


def denied(events: list[Object]) -> list[str]:
    return [
        f"{e['verb']} {e['requestURI']} -> {e['responseStatus']['code']}"
        for e in events
        if (e.get("responseStatus") or {}).get("code") in (401, 403)
    ]


def test_the_operator_runs_with_exactly_the_charts_permissions(
    strict_plane: tuple[ControlPlane, Path], tmp_path: Path
) -> None:
    cp, audit_log = strict_plane
    client = cp.client()
    # What `phalanx install --render | kubectl apply --server-side -f -` creates, CRDs included.
    cli = subprocess.run(
        [sys.executable, "-m", "phalanx", "install", "--render"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    server_side_apply(client, parse(cli.stdout))
    namespace = cp.new_namespace("rbac")
    pool = pool_nodes(cp, namespace, 3, gpus=4)
    kubeconfig, token = token_kubeconfig(cp, "phalanx-operator", tmp_path / "operator.kubeconfig")

    # What the role leaves out, the API server refuses.
    for method, path in (
        ("GET", "/api/v1/secrets"),
        ("GET", f"/api/v1/namespaces/{namespace}/secrets"),
        ("GET", f"/api/v1/namespaces/{namespace}/configmaps"),
        ("GET", "/api/v1/nodes"),
        ("GET", f"/api/v1/namespaces/{RELEASE_NAMESPACE}/serviceaccounts"),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modelservings.serving.phalanx.dev"),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
        ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/phalanx-operator"),
        ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{RELEASE_NAMESPACE}/leases/someone-else"),
        ("GET", f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{namespace}/modelservings/x/scale"),
        ("DELETE", f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{namespace}/modelservings/x"),
    ):
        code, body = cp.http(method, path, token=token)
        assert code == 403, (method, path, code, body)
        assert OPERATOR_USER in body["message"]
    code, _ = cp.http("GET", f"/api/v1/namespaces/{namespace}/pods", token=token)
    assert code == 200

    client.create(ModelServingResource.from_dict(small_serving(namespace, "small", pool, replicas=1)))
    deployment = {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "tiny", "namespace": namespace},
        "spec": {
            "model": "tiny-test",
            "engine": "sim",
            "gpusPerNode": 1,
            "gpuMemory": "24Gi",
            "gpuProduct": "simulated",
            "nodeSelector": {"phalanx.dev/pool": pool},
        },
    }
    client.create(ModelDeploymentResource.from_dict(deployment))
    with operator_process(
        cp, None, tmp_path, kubeconfig=kubeconfig, lease_namespace=RELEASE_NAMESPACE
    ) as proc:
        wait_for(
            "ModelServing small available",
            lambda: status_of(cp, namespace, "small").get("availableReplicas") == 1,
            timeout=180,
        )

        def planned() -> bool:
            status = (
                client.get(ModelDeploymentResource, "tiny", namespace=namespace).to_dict().get("status") or {}
            )
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return conditions.get("Planned") == "True" and bool(status.get("modelServing"))

        wait_for("ModelDeployment tiny planned", planned, timeout=120)
        serving = client.get(ModelDeploymentResource, "tiny", namespace=namespace).to_dict()["status"][
            "modelServing"
        ]
        wait_for(
            f"ModelServing {serving} (owned by tiny) available",
            lambda: status_of(cp, namespace, serving).get("availableReplicas") == 1,
            timeout=180,
        )
        router_kubeconfig, _ = token_kubeconfig(cp, "phalanx-router", tmp_path / "router.kubeconfig")
        entries = {f"{namespace}/small-0-engine-0-0", f"{namespace}/{serving}-0-engine-0-0"}
        with router_process(router_kubeconfig, [], tmp_path) as (_, url):
            wait_for(
                "the router to route to both entry pods", lambda: entries <= routable_in(endpoints(url)), 90
            )
            # The web view lists worker pods, Events and AutoscalingPolicies: the chart's grants suffice.
            with urllib.request.urlopen(f"{url}/ui/state", timeout=10) as resp:
                view = json.loads(resp.read())
            assert view["unreadable"] == [] and view["eventsReadable"] is True, view["unreadable"]
        lease = client.get(Lease, "phalanx-operator", namespace=RELEASE_NAMESPACE)
        assert lease.spec is not None and lease.spec.holderIdentity
        assert proc.poll() is None, "the operator exited"
    owned = client.get(ModelServingResource, serving, namespace=namespace).to_dict()
    assert [o["kind"] for o in owned["metadata"]["ownerReferences"]] == ["ModelDeployment"]

    operator_log = (tmp_path / "operator-all.log").read_text()
    assert "forbidden" not in operator_log.lower() and " 403" not in operator_log, operator_log[-4000:]
    router_text = "".join(log.read_text() for log in tmp_path.glob("router-*.log"))
    assert "forbidden" not in router_text.lower() and " 403" not in router_text, router_text[-4000:]
    operator_events, router_events = audited(audit_log, OPERATOR_USER), audited(audit_log, ROUTER_USER)
    assert denied(operator_events) == []
    assert denied(router_events) == []
    # The audit log did see them work: what each was allowed and used.
    made = requests_made(operator_events)
    print("operator requests:", sorted(made))
    print("router requests:", sorted(requests_made(router_events)))
    assert {
        "create core/pods",
        "create core/services",
        "create apps/controllerrevisions",
        "create scheduling.volcano.sh/podgroups",
        "patch serving.phalanx.dev/modelservings",  # server-side apply of the ModelDeployment's serving
        "patch serving.phalanx.dev/modelservings/status",
        "patch serving.phalanx.dev/modeldeployments/status",
        "create core/events",
        "update coordination.k8s.io/leases",
        "watch apiextensions.k8s.io/customresourcedefinitions",
    } <= made
    assert requests_made(router_events) >= {
        "list core/pods",
        "watch serving.phalanx.dev/modelservings",
        "list core/events",
        "list serving.phalanx.dev/autoscalingpolicies",
    }


def test_with_a_watch_namespace_the_operator_is_granted_nothing_elsewhere(
    strict_plane: tuple[ControlPlane, Path], tmp_path: Path
) -> None:
    cp, audit_log = strict_plane
    client = cp.client()
    watched, elsewhere = cp.new_namespace("watched"), cp.new_namespace("elsewhere")
    options = replace(SCOPED, watch_namespace=watched)
    server_side_apply(client, render(options))
    pool = f"pool-{watched}"
    for index in range(2):
        cp.add_gpu_node(f"{watched}-n{index}", gpus=4, labels={"phalanx.dev/pool": pool})
    account = "scoped-phalanx-operator"
    kubeconfig, token = token_kubeconfig(cp, account, tmp_path / "scoped.kubeconfig", SCOPED.namespace)
    for path in (
        "/api/v1/pods",
        f"/api/v1/namespaces/{elsewhere}/pods",
        "/apis/serving.phalanx.dev/v1alpha1/modelservings",
        f"/apis/serving.phalanx.dev/v1alpha1/namespaces/{elsewhere}/modelservings",
    ):
        code, body = cp.http("GET", path, token=token)
        assert code == 403, (path, code, body)
    code, _ = cp.http("GET", f"/api/v1/namespaces/{watched}/pods", token=token)
    assert code == 200
    client.create(ModelServingResource.from_dict(small_serving(watched, "scoped", pool, replicas=1)))
    with operator_process(cp, watched, tmp_path, kubeconfig=kubeconfig, lease_namespace=SCOPED.namespace):
        wait_for(
            "ModelServing scoped available",
            lambda: status_of(cp, watched, "scoped").get("availableReplicas") == 1,
            timeout=180,
        )
    log = (tmp_path / f"operator-{watched}.log").read_text()
    assert "forbidden" not in log.lower() and " 403" not in log, log[-4000:]
    events = audited(audit_log, SCOPED_USER)
    assert denied(events) == []
    assert {"create core/pods", "update coordination.k8s.io/leases"} <= requests_made(events)
