"""What installing Phalanx on a cluster creates, as plain objects: the operator, the router, their RBAC.

`render(options)` is a pure function from install options to the Kubernetes objects, in the order
`kubectl apply` needs them (namespace, CRDs, accounts and roles, then workloads). They are the same
objects as the Helm chart in `deploy/helm/phalanx` renders with the matching values:
`tests/cluster/test_helm.py` compares `helm template` with `render` object by object, so a change
here needs the same change in the chart (and the other way round).

Permissions are least privilege, each rule with the reason it exists (`docs/install.md` lists them):
the namespaced rules of the operator and the router are ClusterRoles bound cluster-wide, or only in
the watched namespace when one is set; the Lease of leader election is a Role in the release
namespace, restricted to the one Lease name; the only cluster-scoped rule is a watch on the gang
schedulers' two CRDs, by name.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phalanx import __version__
from phalanx.api.crd import crds
from phalanx.api.labels import API_GROUP, ENTRY
from phalanx.api.names import is_dns1123_label, is_label_key, is_label_value
from phalanx.operator.manager import OperatorOptions

Object = dict[str, Any]

CHART = "phalanx"
HEALTH_PORT: int = OperatorOptions.health_port
LEASE_NAME: str = OperatorOptions.lease_name
ROUTER_PORT = 8000
RELEASE_NAME_MAX = 53  # Helm's limit: names of the form <release>-<suffix> must stay within 63
RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", "helm.sh/")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
# A non-root user of no particular image (distroless' "nonroot"): runAsNonRoot can be checked by
# the kubelet only with a numeric user.
RUN_AS_USER = 65532


class InstallError(ValueError):
    """Options that cannot be installed; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Workload:
    """A Deployment's knobs: the chart's `operator.*` and `router.*` values."""

    replicas: int
    resources: Mapping[str, Any]
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)


def default_operator() -> Workload:
    return Workload(
        replicas=2,
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
    )


def default_router() -> Workload:
    return Workload(
        replicas=2,
        resources={"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    )


@dataclass(frozen=True)
class InstallOptions:
    """The chart's values (`deploy/helm/phalanx/values.yaml`), named as in Python.

    `release` plays Helm's release name, `namespace` the release namespace; `crds` and
    `create_namespace` stand for Helm's `--include-crds`/`--skip-crds` and `--create-namespace`.
    """

    release: str = CHART
    namespace: str = "phalanx-system"
    image_repository: str = "phalanx"
    image_tag: str = ""  # "": the chart's appVersion, this package's version
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    watch_namespace: str = ""  # "": every namespace
    labels: Mapping[str, str] = field(default_factory=dict)
    operator: Workload = field(default_factory=default_operator)
    operator_workers: int = 2
    # Let the operator list nodes and bound pods cluster-wide (the autoscaler's placement limit).
    operator_placement: bool = False
    # The router's page for the autoscaler; "": the router's Service when the router is installed.
    operator_router_metrics_url: str = ""
    router_enabled: bool = True
    router: Workload = field(default_factory=default_router)
    service_type: str = "ClusterIP"
    service_port: int = ROUTER_PORT
    # A Secret in the release namespace holding the router's API keys (file name = key name).
    router_api_keys_secret: str = ""
    # Monitoring (docs/observability.md): Grafana dashboards as ConfigMaps with the sidecar's label,
    # the alert rules as a PrometheusRule, ServiceMonitor/PodMonitors for the operator, router, engines.
    dashboards: bool = False
    dashboard_label: str = "grafana_dashboard"
    dashboard_label_value: str = "1"
    alert_rules: bool = False
    scrape: bool = False
    engine_metrics_port: str = "http"  # the engines' container port named so serves /metrics
    crds: bool = True
    create_namespace: bool = True

    @property
    def image(self) -> str:
        return f"{self.image_repository}:{self.image_tag or __version__}"


_IMAGE = re.compile(r"^[^\s@:]+(:\d+)?(/[^\s@:]+)*$")


def split_image(image: str) -> tuple[str, str]:
    """`registry:5000/repo:tag` -> (`registry:5000/repo`, `tag`); no tag -> (image, "")."""
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, _, tag = image.rpartition(":")
        return repository, tag
    return image, ""


def problems(options: InstallOptions) -> list[str]:
    """Everything wrong with the options, each with the option it is about."""
    found: list[str] = []
    if not is_dns1123_label(options.release) or len(options.release) > RELEASE_NAME_MAX:
        found.append(
            f"release name {options.release!r}: must be a DNS-1123 label (lower-case letters, digits, '-') "
            f"of at most {RELEASE_NAME_MAX} characters"
        )
    for what, value in (("namespace", options.namespace), ("watch namespace", options.watch_namespace)):
        if (value or what == "namespace") and not is_dns1123_label(value):
            found.append(f"{what} {value!r}: must be a DNS-1123 label (lower-case letters, digits, '-')")
    if not _IMAGE.match(options.image_repository):
        found.append(
            f"image repository {options.image_repository!r}: must be a repository name without spaces, "
            "tag or digest"
        )
    if options.image_tag and not re.fullmatch(r"[\w][\w.-]{0,127}", options.image_tag):
        found.append(f"image tag {options.image_tag!r}: letters, digits, '_', '.', '-' (at most 128)")
    secret = options.router_api_keys_secret
    if secret and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", secret):
        found.append(f"router API keys Secret {secret!r}: must be a DNS-1123 subdomain (a Secret's name)")
    if options.image_pull_policy not in PULL_POLICIES:
        found.append(f"image pull policy {options.image_pull_policy!r}: one of {', '.join(PULL_POLICIES)}")
    for key, value in options.labels.items():
        if key.startswith(RESERVED_LABEL_PREFIXES):
            found.append(f"label {key!r}: the chart sets app.kubernetes.io/* and helm.sh/* labels itself")
        elif not is_label_key(key) or not is_label_value(value):
            found.append(f"label {key}={value!r}: not a valid Kubernetes label")
    for component, workload in (("operator", options.operator), ("router", options.router)):
        if workload.replicas < 0:
            found.append(f"{component} replicas {workload.replicas}: must be at least 0")
    if options.operator_workers < 1:
        found.append(f"operator workers {options.operator_workers}: must be at least 1")
    if options.service_type not in SERVICE_TYPES:
        found.append(f"service type {options.service_type!r}: one of {', '.join(SERVICE_TYPES)}")
    url = options.operator_router_metrics_url
    if url and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        found.append(
            f"router metrics URL {url!r}: an http:// or https:// URL, e.g. http://router.ns.svc:8000/metrics"
        )
    if not 1 <= options.service_port <= 65535:
        found.append(f"service port {options.service_port}: must be between 1 and 65535")
    if options.dashboards and not is_label_key(options.dashboard_label):
        found.append(f"dashboard label {options.dashboard_label!r}: not a valid Kubernetes label key")
    if options.dashboards and not is_label_value(options.dashboard_label_value):
        found.append(f"dashboard label value {options.dashboard_label_value!r}: not a valid label value")
    if options.scrape and not re.fullmatch(
        r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?", options.engine_metrics_port
    ):
        found.append(
            f"engine metrics port {options.engine_metrics_port!r}: a container port's name (at most 15 "
            "lower-case letters, digits, '-'), e.g. http"
        )
    return found


def _workload_values(workload: Workload) -> Object:
    return {
        "replicas": workload.replicas,
        "resources": copy.deepcopy(dict(workload.resources)),
        "nodeSelector": dict(workload.node_selector),
        "tolerations": [dict(t) for t in copy.deepcopy(workload.tolerations)],
        "affinity": copy.deepcopy(dict(workload.affinity)),
    }


def chart_values(options: InstallOptions) -> Object:
    """The Helm values that make the chart render what `render(options)` does (its values.yaml
    for the default options). Release name, namespace, CRDs and namespace creation are Helm's
    own flags, not values."""
    return {
        "image": {
            "repository": options.image_repository,
            "tag": options.image_tag,
            "pullPolicy": options.image_pull_policy,
        },
        "imagePullSecrets": list(options.image_pull_secrets),
        "watchNamespace": options.watch_namespace,
        "commonLabels": dict(options.labels),
        "operator": {
            **_workload_values(options.operator),
            "workers": options.operator_workers,
            "placement": options.operator_placement,
            "routerMetricsUrl": options.operator_router_metrics_url,
        },
        "router": {
            "enabled": options.router_enabled,
            **_workload_values(options.router),
            "service": {"type": options.service_type, "port": options.service_port},
            "apiKeysSecret": options.router_api_keys_secret,
        },
        "monitoring": {
            "dashboards": {
                "enabled": options.dashboards,
                "label": options.dashboard_label,
                "labelValue": options.dashboard_label_value,
            },
            "alertRules": {"enabled": options.alert_rules},
            "scrape": {"enabled": options.scrape, "enginePort": options.engine_metrics_port},
        },
    }


def helm_set_flags(options: InstallOptions) -> list[str]:
    """`--set-string`/`--set-json` arguments for every value that differs from the chart's
    defaults: with them, `helm install` installs what `render(options)` prints.

    Helm merges maps given on the command line into the chart's defaults, so a default key the
    options leave out (a resource limit, say) is set to null, which is how Helm removes one."""
    flags: list[str] = []

    def walk(values: Object, defaults: Object, prefix: str) -> None:
        for key in [*values, *(k for k in defaults if k not in values)]:
            value, default = values.get(key), defaults.get(key)
            path = prefix + key.replace(".", "\\.")  # a dot inside a key (a label) is escaped
            if isinstance(value, dict) and isinstance(default, dict):
                walk(value, default, f"{path}.")
            elif value != default:
                if isinstance(value, str):
                    flags.extend(["--set-string", f"{path}={value}"])
                else:
                    flags.extend(["--set-json", f"{path}={json.dumps(value, separators=(',', ':'))}"])

    walk(chart_values(options), chart_values(InstallOptions()), "")
    return flags


# ------------------------------------------------------------------------------------------------ RBAC


@dataclass(frozen=True)
class Rule:
    """One RBAC policy rule and why the component needs it."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()

    def to_dict(self) -> Object:
        rule: Object = {"apiGroups": [self.api_group], "resources": list(self.resources)}
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        rule["verbs"] = list(self.verbs)
        return rule


_SERVING = "serving.phalanx.dev"
_WRITE_OWNED = ("list", "watch", "create", "patch", "delete")

OPERATOR_RULES: tuple[Rule, ...] = (
    Rule(
        _SERVING,
        ("modelservings",),
        ("get", "list", "watch", "create", "patch"),
        "read every spec; create, patch: server-side apply of the ModelServing a ModelDeployment compiles to",
    ),
    Rule(_SERVING, ("modelservings/status",), ("patch",), "write the ModelServing status"),
    Rule(_SERVING, ("modeldeployments",), ("get", "list", "watch"), "read every ModelDeployment"),
    Rule(
        _SERVING, ("modeldeployments/status",), ("patch",), "write the plan and the Planned/Valid conditions"
    ),
    Rule(_SERVING, ("autoscalingpolicies",), ("list", "watch"), "read every AutoscalingPolicy"),
    Rule(
        _SERVING,
        ("autoscalingpolicies/status",),
        ("patch",),
        "write each policy's decisions and its TargetFound/ConflictingAutoscaler conditions",
    ),
    Rule(
        _SERVING,
        ("modelservings/finalizers", "modeldeployments/finalizers"),
        ("update",),
        "owner references with blockOwnerDeletion, where the OwnerReferencesPermissionEnforcement "
        "admission plugin is on",
    ),
    Rule("", ("pods",), _WRITE_OWNED, "create, drain (annotate) and delete the pods of every group"),
    Rule(
        "",
        ("services",),
        _WRITE_OWNED,
        "client and headless Services; patch: server-side apply and failure-count annotations",
    ),
    Rule("", ("events",), ("create",), "report what the controller did on the ModelServing"),
    Rule(
        "apps",
        ("controllerrevisions",),
        ("list", "watch", "create", "delete"),
        "keep the spec of older revisions for partitioned rollouts",
    ),
    Rule(
        "scheduling.volcano.sh",
        ("podgroups",),
        _WRITE_OWNED,
        "Volcano gang objects, one per ServingGroup (list also finds out whether Volcano is installed)",
    ),
    Rule(
        "scheduling.x-k8s.io",
        ("podgroups",),
        _WRITE_OWNED,
        "coscheduling gang objects (list also finds out whether the plugin is installed)",
    ),
)
GANG_CRD_RULES: tuple[Rule, ...] = (
    Rule(
        "apiextensions.k8s.io",
        ("customresourcedefinitions",),
        ("watch",),
        "notice Volcano or the coscheduling plugin being installed or removed; these two CRDs only",
        resource_names=("podgroups.scheduling.volcano.sh", "podgroups.scheduling.x-k8s.io"),
    ),
)
PLACEMENT_RULES: tuple[Rule, ...] = (
    Rule(
        "",
        ("nodes",),
        ("list",),
        "the nodes' allocatable GPUs (extended resources), for how many more groups the autoscaler can place",
    ),
    Rule(
        "",
        ("pods",),
        ("list",),
        "the requests of the pods bound to those nodes, in every namespace (what is not free)",
    ),
)
LEADER_RULES: tuple[Rule, ...] = (
    Rule(
        "coordination.k8s.io", ("leases",), ("create",), "create the leader Lease (in the release namespace)"
    ),
    Rule(
        "coordination.k8s.io",
        ("leases",),
        ("get", "update"),
        "hold, renew and release the leader Lease; this Lease only",
        resource_names=(LEASE_NAME,),
    ),
)
ROUTER_RULES: tuple[Rule, ...] = (
    Rule(
        "",
        ("pods",),
        ("list", "watch"),
        "find the ready entry pods to route to; the web view lists worker pods",
    ),
    Rule(_SERVING, ("modelservings",), ("list", "watch"), "which ModelServing serves which model"),
    Rule("", ("events",), ("list",), "the web view's timeline of rollout, recovery and scaling events"),
    Rule(
        _SERVING,
        ("autoscalingpolicies",),
        ("list",),
        "the web view's autoscaling table: desired, current, ready",
    ),
)


# --------------------------------------------------------------------------------------------- objects


def fullname(release: str) -> str:
    """Helm's usual `<release>-<chart>`, or the release alone when it already names the chart."""
    name = release if CHART in release else f"{release}-{CHART}"
    return name[:63].removesuffix("-")


def component_name(release: str, component: str) -> str:
    return f"{fullname(release)}-{component}"[:63].removesuffix("-")


def selector_labels(options: InstallOptions, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": CHART,
        "app.kubernetes.io/instance": options.release,
        "app.kubernetes.io/component": component,
    }


def labels(options: InstallOptions, component: str) -> dict[str, str]:
    return {
        "helm.sh/chart": f"{CHART}-{__version__}",
        **selector_labels(options, component),
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/part-of": CHART,
        **options.labels,
    }


def _metadata(options: InstallOptions, name: str, component: str, namespace: str | None) -> Object:
    """Name, namespace (None: a cluster-scoped object) and the component's labels."""
    metadata: Object = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = labels(options, component)
    return metadata


def _grant(
    options: InstallOptions,
    component: str,
    name: str,
    rules: tuple[Rule, ...],
    *,
    role_namespace: str | None = None,
    binding_namespace: str | None = None,
) -> list[Object]:
    """A role holding `rules` and the binding that gives it to the component's ServiceAccount:
    a ClusterRole unless `role_namespace` is given, bound cluster-wide unless `binding_namespace` is."""
    role_kind = "Role" if role_namespace else "ClusterRole"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": role_kind,
        "metadata": _metadata(options, name, component, role_namespace),
        "rules": [rule.to_dict() for rule in rules],
    }
    account = component_name(options.release, component)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding" if binding_namespace else "ClusterRoleBinding",
        "metadata": _metadata(options, name, component, binding_namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": options.namespace}],
    }
    return [role, binding]


def _service_account(options: InstallOptions, name: str, component: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(options, name, component, options.namespace),
    }


def _deployment(
    options: InstallOptions,
    *,
    component: str,
    workload: Workload,
    container: Object,
    metrics_port: int,
) -> Object:
    name = component_name(options.release, component)
    pod_spec: Object = {"serviceAccountName": name}
    if options.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in options.image_pull_secrets]
    pod_spec["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod_spec["containers"] = [
        {
            "name": component,
            "image": options.image,
            "imagePullPolicy": options.image_pull_policy,
            "command": ["phalanx"],
            **container,
            "resources": copy.deepcopy(dict(workload.resources)),
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
    ]
    pod_spec["volumes"] = [{"name": "tmp", "emptyDir": {}}]
    if workload.node_selector:
        pod_spec["nodeSelector"] = dict(workload.node_selector)
    if workload.affinity:
        pod_spec["affinity"] = copy.deepcopy(dict(workload.affinity))
    if workload.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in copy.deepcopy(workload.tolerations)]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(options, name, component, options.namespace),
        "spec": {
            "replicas": workload.replicas,
            "selector": {"matchLabels": selector_labels(options, component)},
            "template": {
                "metadata": {
                    "labels": labels(options, component),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(metrics_port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def _watch_args(options: InstallOptions) -> list[str]:
    return ["--namespace", options.watch_namespace] if options.watch_namespace else []


def router_metrics_url(options: InstallOptions) -> str:
    """The page the operator's autoscaler reads the router's figures from: the option, else the
    router's Service (its pods are then read one by one, `operator.router_pages`), else none."""
    if options.operator_router_metrics_url or not options.router_enabled:
        return options.operator_router_metrics_url
    service = component_name(options.release, "router")
    return f"http://{service}.{options.namespace}.svc:{options.service_port}/metrics"


def _router_metrics_args(options: InstallOptions) -> list[str]:
    url = router_metrics_url(options)
    return ["--router-metrics-url", url] if url else []


def operator_objects(options: InstallOptions) -> list[Object]:
    """ServiceAccount, roles and bindings, and the leader-elected operator Deployment."""
    component = "operator"
    name = component_name(options.release, component)
    container: Object = {
        "args": [
            "operator",
            "--lease-namespace",
            "$(POD_NAMESPACE)",
            "--health-port",
            str(HEALTH_PORT),
            "--workers",
            str(options.operator_workers),
            *_watch_args(options),
            *_router_metrics_args(options),
        ],
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5},
    }
    return [
        _service_account(options, name, component),
        *_grant(options, component, name, OPERATOR_RULES, binding_namespace=options.watch_namespace or None),
        *_grant(options, component, f"{name}-gang-apis", GANG_CRD_RULES),
        *(
            _grant(options, component, f"{name}-placement", PLACEMENT_RULES)
            if options.operator_placement
            else []
        ),
        *_grant(
            options,
            component,
            f"{name}-leader-election",
            LEADER_RULES,
            role_namespace=options.namespace,
            binding_namespace=options.namespace,
        ),
        _deployment(
            options,
            component=component,
            workload=options.operator,
            container=container,
            metrics_port=HEALTH_PORT,
        ),
    ]


API_KEYS_DIR = "/etc/phalanx/api-keys"


def router_objects(options: InstallOptions) -> list[Object]:
    """ServiceAccount, read-only role and binding, the router Deployment and its Service."""
    component = "router"
    name = component_name(options.release, component)
    probe: Object = {"tcpSocket": {"port": "http"}, "periodSeconds": 10}
    keys = ["--api-keys", API_KEYS_DIR] if options.router_api_keys_secret else []
    container: Object = {
        "args": ["router", "--host", "0.0.0.0", "--port", str(ROUTER_PORT), *_watch_args(options), *keys],
        "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
        # TCP, not /health: /health is 503 while no model is served, and a router with nothing to
        # route to should still answer clients with a clear 503 rather than drop out of the Service.
        "livenessProbe": probe,
        "readinessProbe": probe,
    }
    service: Object = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(options, name, component, options.namespace),
        "spec": {
            "type": options.service_type,
            "selector": selector_labels(options, component),
            "ports": [
                {"name": "http", "port": options.service_port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
    deployment = _deployment(
        options, component=component, workload=options.router, container=container, metrics_port=ROUTER_PORT
    )
    if options.router_api_keys_secret:
        # Mounted, not read through the API: the router needs no RBAC on Secrets, and the kubelet
        # updates the files in place when the Secret changes (the router reloads them).
        pod = deployment["spec"]["template"]["spec"]
        pod["containers"][0]["volumeMounts"].append(
            {"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True}
        )
        pod["volumes"].append({"name": "api-keys", "secret": {"secretName": options.router_api_keys_secret}})
    return [
        _service_account(options, name, component),
        *_grant(options, component, name, ROUTER_RULES, binding_namespace=options.watch_namespace or None),
        service,
        deployment,
    ]


# ---------------------------------------------------------------------------------------- monitoring

# The dashboards and rules of deploy/ (the chart links them under files/); a source checkout has them.
DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
DASHBOARDS = ("phalanx-router", "phalanx-engines", "phalanx-rollouts")
# Job names the alert rules and dashboards select targets by (docs/observability.md).
JOBS = {"operator": "phalanx-operator", "router": "phalanx-router", "engine": "phalanx-engine"}
# Engine pod labels copied onto their series: target label -> pod label (serving.phalanx.dev/*), in
# the order of the target (the chart ranges over a dict, which Helm sorts by key).
ENGINE_LABELS = (
    ("group", "group-index"),
    ("modelserving", "name"),
    ("pd_role", "pd-role"),
    ("revision", "revision"),
    ("role", "role"),
)
MONITORING_API = "monitoring.coreos.com/v1"


def _asset(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise InstallError(
            [
                f"{path}: not found ({exc.strerror}); dashboards and alert rules render from a "
                "Phalanx source checkout"
            ]
        ) from None


def dashboard_objects(options: InstallOptions) -> list[Object]:
    """One ConfigMap per dashboard, labelled for Grafana's dashboard sidecar."""
    objects: list[Object] = []
    for name in DASHBOARDS:
        metadata = _metadata(
            options,
            component_name(options.release, f"dashboard-{name.removeprefix('phalanx-')}"),
            "dashboards",
            options.namespace,
        )
        metadata["labels"][options.dashboard_label] = options.dashboard_label_value
        text = _asset(DEPLOY / "grafana" / f"{name}.json")
        objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {f"{name}.json": text}}
        )
    return objects


def alert_rule_objects(options: InstallOptions) -> list[Object]:
    """deploy/prometheus/rules.yaml as a PrometheusRule (the Prometheus Operator's kind)."""
    rules = yaml.safe_load(_asset(DEPLOY / "prometheus" / "rules.yaml"))
    return [
        {
            "apiVersion": MONITORING_API,
            "kind": "PrometheusRule",
            "metadata": _metadata(
                options, component_name(options.release, "alerts"), "alerts", options.namespace
            ),
            "spec": {"groups": rules["groups"]},
        }
    ]


def _monitor(
    options: InstallOptions,
    kind: str,
    component: str,
    selector: Mapping[str, str],
    namespaces: Object,
    endpoint: Object,
) -> Object:
    """A ServiceMonitor or PodMonitor of one endpoint, in the release namespace."""
    endpoints = "endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"
    name = component_name(options.release, component)
    return {
        "apiVersion": MONITORING_API,
        "kind": kind,
        "metadata": _metadata(options, name, component, options.namespace),
        "spec": {
            "selector": {"matchLabels": dict(selector)},
            "namespaceSelector": namespaces,
            endpoints: [{**endpoint, "path": "/metrics"}],
        },
    }


def _job(job: str) -> Object:
    return {"targetLabel": "job", "replacement": job}


def scrape_objects(options: InstallOptions) -> list[Object]:
    """A PodMonitor for the operator (no Service), a ServiceMonitor for the router's Service, and
    a PodMonitor for the engines' entry pods, which serve the model and /metrics."""
    own = {"matchNames": [options.namespace]}
    # honorLabels: the operator's status series carry the ModelServing's `namespace`, the
    # router's series the engine `endpoint`; the target's own labels of those names give way.
    operator = {"port": "health", "honorLabels": True, "relabelings": [_job(JOBS["operator"])]}
    objects = [
        _monitor(options, "PodMonitor", "operator", selector_labels(options, "operator"), own, operator)
    ]
    if options.router_enabled:
        router = {"port": "http", "honorLabels": True, "relabelings": [_job(JOBS["router"])]}
        selector = selector_labels(options, "router")
        objects.append(_monitor(options, "ServiceMonitor", "router", selector, own, router))
    relabel = [_job(JOBS["engine"])]
    for target, label in ENGINE_LABELS:
        source = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", f"{API_GROUP}/{label}")
        relabel.append({"sourceLabels": [source], "targetLabel": target})
    watched = {"matchNames": [options.watch_namespace]} if options.watch_namespace else {"any": True}
    engines = {"port": options.engine_metrics_port, "relabelings": relabel}
    objects.append(_monitor(options, "PodMonitor", "engines", {ENTRY: "true"}, watched, engines))
    return objects


# The order Helm installs kinds in, which is also an order `kubectl apply -f` can create them in.
_KIND_ORDER = (
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "ServiceMonitor",
    "PodMonitor",
    "PrometheusRule",
)


def render(options: InstallOptions) -> list[Object]:
    """Every object of an installation, creatable in this order. InstallError on bad options."""
    found = problems(options)
    if found:
        raise InstallError(found)
    objects: list[Object] = []
    if options.create_namespace:
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": options.namespace}})
    if options.crds:
        objects += copy.deepcopy(crds())
    objects += operator_objects(options)
    if options.router_enabled:
        objects += router_objects(options)
    if options.dashboards:
        objects += dashboard_objects(options)
    if options.alert_rules:
        objects += alert_rule_objects(options)
    if options.scrape:
        objects += scrape_objects(options)
    return sorted(objects, key=lambda obj: _KIND_ORDER.index(obj["kind"]))  # stable: keeps the rest
