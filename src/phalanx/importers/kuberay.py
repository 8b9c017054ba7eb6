"""The pods KubeRay builds for a Ray cluster, as pure functions, written for a Phalanx role instance.

The model is KubeRay v1.2.1 (the release AIBrix installs; `ray-operator/controllers/ray/common/pod.go`):
- `ray start` flags: the group's `rayStartParams`, then for a worker `address=<head>:<port>`, for the
  head `dashboard-host=0.0.0.0`, for both `metrics-export-port=8080`,
  `dashboard-agent-listen-port=52365` and `block=true` (all unless set), then `num-cpus`, `memory` and
  `num-gpus` from the Ray container's (first container's) resource limits, rounded up to whole units.
  A `true` value is a bare flag, `false` drops it (except `log-color` and `include-dashboard`).
  KubeRay v1.2.1 forces `block=true`; AIBrix's build of it keeps `block: 'false'` (AIBrix's samples
  run the engine after `$KUBERAY_GEN_RAY_START_CMD`), so whether `block` is honoured is an `Operator`
  setting. Flags are written in name order: v1.2.1 iterates a Go map (any order), later releases sort.
- The Ray container's command becomes `/bin/bash -lc -- "[<its command and args> && ]ulimit -n 65536;
  ray start ..."` unless the cluster or the pod template is annotated `ray.io/overwrite-container-cmd:
  "true"` or the command already contains `ray start`.
- Env appended to the Ray container after the template's own: on workers `FQ_RAY_IP` and `RAY_IP`;
  `RAY_CLUSTER_NAME`, `RAY_CLOUD_INSTANCE_ID`, `RAY_NODE_TYPE_NAME`, `KUBERAY_GEN_RAY_START_CMD`; unless
  set `RAY_PORT`, `RAY_ADDRESS` (head `127.0.0.1:<port>`, worker `<head>:<port>`),
  `RAY_USAGE_STATS_KUBERAY_IN_USE`; on the head `RAY_USAGE_STATS_EXTRA_TAGS`; unless set
  `REDIS_PASSWORD` (the `redis-password` parameter, else empty) and `RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE`.
  A template value of a name KubeRay always appends is replaced (Kubernetes lets the last one win).
  Every init container gets `FQ_RAY_IP` and `RAY_IP`.
- A `/dev/shm` memory emptyDir (`shared-mem`, sized by the Ray container's memory request, else limit)
  unless something is mounted there; a `metrics` port 8080 unless a port has that name.
- Workers get an init container `wait-gcs-ready` that polls `ray health-check` on the head every 5 s
  (KubeRay's own script also prints progress; this one waits the same way).
- With probe injection on (KubeRay's default, off in AIBrix's install), exec readiness and liveness
  probes on the Ray container where the template has none: the raylet's health, and on the head also
  the GCS's, through the dashboard (agent) ports.
- Not reproduced: what KubeRay adds for its in-tree autoscaler (`--no-monitor`, a service account, the
  autoscaler sidecar and its `/tmp/ray` log volume) and for GCS fault tolerance; the importer says so.

What differs inside Phalanx, by design: the head's address is `$(ENTRY_ADDRESS)` (the entry pod's
name through its headless Service) instead of `<cluster>-head-svc.<ns>.svc.cluster.local`, for
`FQ_RAY_IP`, `RAY_IP` and `--address`; `RAY_CLUSTER_NAME` is the ServingGroup's name
(`$(MODEL_SERVING_NAME)-$(GROUP_INDEX)`) and `RAY_NODE_TYPE_NAME` the group name as plain values,
where KubeRay reads the `ray.io/cluster` and `ray.io/group` labels. Pods keep the labels `ray.io/is-ray-node`,
`ray.io/node-type` and `ray.io/group` (AIBrix's gateway skips `ray.io/node-type: worker` pods), not
`ray.io/cluster`, `ray.io/identifier` or `app.kubernetes.io/*=kuberay`: with those a KubeRay operator
would count the pods as its own cluster's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from phalanx.api import labels as L
from phalanx.api.quantity import QuantityError, parse_quantity

Object = dict[str, Any]
NodeType = Literal["head", "worker"]

VERSION = "v1.2.1"
DEFAULT_PORT = "6379"
HEAD_GROUP = "headgroup"
OVERWRITE_COMMAND = "ray.io/overwrite-container-cmd"
ENTRY = f"$({L.ENV_ENTRY_ADDRESS})"
CLUSTER_NAME = f"$({L.ENV_MODEL_SERVING})-$({L.ENV_GROUP_INDEX})"
RAY_LABELS = ("ray.io/is-ray-node", "ray.io/node-type", "ray.io/group")

_METRICS_PORT = 8080
_AGENT_PORT = 52365
_DASHBOARD_PORT = 8265
_SHM = ("shared-mem", "/dev/shm")
# Parameters whose true/false is passed as a value, not as a bare flag.
_VALUED_BOOLEANS = ("log-color", "include-dashboard")
_SHELL = ["/bin/bash", "-lc", "--"]
_ULIMIT = "ulimit -n 65536"


@dataclass(frozen=True)
class Operator:
    """How the KubeRay operator that ran the cluster was set up."""

    description: str
    inject_probes: bool  # ENABLE_PROBES_INJECTION (default true)
    honour_block: bool  # AIBrix's build keeps rayStartParams block: 'false'


UPSTREAM = Operator(f"KubeRay {VERSION} with its defaults", inject_probes=True, honour_block=False)
AIBRIX = Operator(
    f"KubeRay {VERSION} as AIBrix installs it (no probe injection, block: 'false' honoured)",
    inject_probes=False,
    honour_block=True,
)


@dataclass(frozen=True)
class RayNode:
    """One Ray node group: the head or a worker group, with its pod template as written."""

    node_type: NodeType
    group: str  # the ray.io/group value: `headgroup`, or the worker group's name
    params: Mapping[str, str]  # rayStartParams
    template: Mapping[str, Any]  # a PodTemplateSpec (metadata, spec)


def head_port(head_params: Mapping[str, str]) -> str:
    return head_params.get("port", DEFAULT_PORT)


def _ray_container(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    container: Mapping[str, Any] = spec["containers"][0]
    return container


def _whole_units(value: Any) -> int:
    """Go's resource.Quantity.Value(): the quantity rounded up to a whole number; 0 if unreadable."""
    try:
        return math.ceil(parse_quantity(value))
    except QuantityError:
        return 0


def start_params(node: RayNode, port: str, operator: Operator) -> dict[str, str]:
    """rayStartParams completed as KubeRay completes them (setMissingRayStartParams + resources)."""
    params = dict(node.params)
    if node.node_type == "worker":
        params.setdefault("address", f"{ENTRY}:{port}")
    else:
        params.setdefault("dashboard-host", "0.0.0.0")
    params.setdefault("metrics-export-port", str(_METRICS_PORT))
    if not (operator.honour_block and "block" in params):
        params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", str(_AGENT_PORT))
    limits = (_ray_container(node.template["spec"]).get("resources") or {}).get("limits") or {}
    for param, resource in (("num-cpus", "cpu"), ("memory", "memory")):
        amount = _whole_units(limits.get(resource, 0))
        if param not in params and amount:
            params[param] = str(amount)
    if "num-gpus" not in params:
        gpus = [(key, _whole_units(limits[key])) for key in sorted(limits) if str(key).endswith("gpu")]
        counted = [count for _, count in gpus if count]
        if counted:
            params["num-gpus"] = str(counted[0])
    return params


def start_command(node_type: NodeType, params: Mapping[str, str]) -> str:
    """`ray start ...` with KubeRay's spacing (each flag is written as ` --flag `)."""
    flags = ""
    for name in sorted(params):
        value = params[name]
        if value.lower() in ("true", "false") and name not in _VALUED_BOOLEANS:
            flags += f" --{name} " if value.lower() == "true" else ""
        else:
            flags += f" --{name}={value} "
    return f"ray start --head {flags}" if node_type == "head" else f"ray start {flags}"


def _joined(parts: Any) -> str:
    return "".join(f" {part} " for part in parts or [])


def overwrites_command(cluster_annotations: Mapping[str, Any], template: Mapping[str, Any]) -> bool:
    own = (template.get("metadata") or {}).get("annotations") or {}
    return any(str(a.get(OVERWRITE_COMMAND, "")).lower() == "true" for a in (cluster_annotations, own))


def _command(container: Object, ray_start: str, keep: bool) -> None:
    """KubeRay runs the user's command, then `ulimit; ray start`, in one login shell."""
    written = _joined(container.get("command")) + _joined(container.get("args"))
    if keep or "ray start" in written:
        return
    generated = f"{_ULIMIT}; {ray_start}"
    container["command"] = list(_SHELL)
    container["args"] = [f"{written} && {generated}" if written else generated]


def _append(env: list[Any], name: str, entry: Object, *, always: bool) -> None:
    exists = any(isinstance(item, Mapping) and item.get("name") == name for item in env)
    if exists and not always:
        return
    if exists:  # KubeRay appends a second entry; the last one wins, so keep only that
        env[:] = [item for item in env if not (isinstance(item, Mapping) and item.get("name") == name)]
    env.append({"name": name, **entry})


def _value(value: str) -> Object:
    return {"value": value}


def _ray_env(container: Object, node: RayNode, params: Mapping[str, str], port: str, ray_start: str) -> None:
    env: list[Any] = container.setdefault("env", [])
    worker = node.node_type == "worker"
    if worker:
        _append(env, "FQ_RAY_IP", _value(ENTRY), always=True)
        _append(env, "RAY_IP", _value(ENTRY), always=True)
    _append(env, "RAY_CLUSTER_NAME", _value(CLUSTER_NAME), always=True)
    instance = {"valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    _append(env, "RAY_CLOUD_INSTANCE_ID", instance, always=True)
    _append(env, "RAY_NODE_TYPE_NAME", _value(node.group), always=True)
    _append(env, "KUBERAY_GEN_RAY_START_CMD", _value(ray_start), always=True)
    _append(env, "RAY_PORT", _value(port), always=False)
    _append(env, "RAY_ADDRESS", _value(f"{ENTRY if worker else '127.0.0.1'}:{port}"), always=False)
    _append(env, "RAY_USAGE_STATS_KUBERAY_IN_USE", _value("1"), always=False)
    if not worker:
        tags = f"kuberay_version={VERSION};kuberay_crd=RayCluster"
        _append(env, "RAY_USAGE_STATS_EXTRA_TAGS", _value(tags), always=True)
    _append(env, "REDIS_PASSWORD", _value(params.get("redis-password", "")), always=False)
    _append(env, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", _value("1"), always=False)


def _wait_for_head(ray: Mapping[str, Any], port: str) -> Object:
    """Workers start once the head's GCS answers (KubeRay's `wait-gcs-ready`)."""
    address = f"{ENTRY}:{port}"
    script = (
        f"until ray health-check --address {address} > /dev/null 2>&1; do "
        f'echo "waiting for the GCS of the Ray head at {address}"; sleep 5; done'
    )
    init: Object = {"name": "wait-gcs-ready", "image": ray.get("image")}
    if ray.get("imagePullPolicy"):
        init["imagePullPolicy"] = ray["imagePullPolicy"]
    init["command"] = list(_SHELL)
    init["args"] = [script]
    if ray.get("securityContext"):
        init["securityContext"] = copy.deepcopy(ray["securityContext"])
    if ray.get("env"):
        init["env"] = copy.deepcopy(ray["env"])
    if ray.get("volumeMounts"):
        init["volumeMounts"] = copy.deepcopy(ray["volumeMounts"])
    fixed = {"cpu": "200m", "memory": "256Mi"}
    init["resources"] = {"limits": dict(fixed), "requests": dict(fixed)}
    return init


def _shared_memory(spec: Object, ray: Object) -> None:
    name, path = _SHM
    if any(isinstance(m, Mapping) and m.get("mountPath") == path for m in ray.get("volumeMounts") or []):
        return
    volumes: list[Any] = spec.setdefault("volumes", [])
    if not any(isinstance(v, Mapping) and v.get("name") == name for v in volumes):
        resources = ray.get("resources") or {}
        size = (resources.get("requests") or {}).get("memory") or (resources.get("limits") or {}).get(
            "memory"
        )
        empty_dir: Object = {"medium": "Memory"}
        if size is not None:
            empty_dir["sizeLimit"] = size
        volumes.append({"name": name, "emptyDir": empty_dir})
    ray.setdefault("volumeMounts", []).append({"mountPath": path, "name": name})


def _metrics_port(ray: Object) -> None:
    ports: list[Any] = ray.setdefault("ports", [])
    if not any(isinstance(p, Mapping) and p.get("name") == "metrics" for p in ports):
        ports.append({"containerPort": _METRICS_PORT, "name": "metrics"})


def _health(port: int, path: str, timeout: int) -> str:
    return f"wget -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"


def _probes(ray: Object, node_type: NodeType) -> None:
    # KubeRay passes the readiness failure threshold (10) as the GCS check's wget timeout.
    checks = [_health(_AGENT_PORT, "api/local_raylet_healthz", 2)]
    if node_type == "head":
        checks.append(_health(_DASHBOARD_PORT, "api/gcs_healthz", 10))
    action = {"exec": {"command": ["bash", "-c", " && ".join(checks)]}}
    timing = {"timeoutSeconds": 2, "periodSeconds": 5, "successThreshold": 1}
    if ray.get("livenessProbe") is None:
        ray["livenessProbe"] = {**action, "initialDelaySeconds": 30, **timing, "failureThreshold": 120}
    if ray.get("readinessProbe") is None:
        ray["readinessProbe"] = {**action, "initialDelaySeconds": 10, **timing, "failureThreshold": 10}


def _labels(node: RayNode, extra: Mapping[str, str]) -> dict[str, str]:
    """KubeRay's labels where the template has none of that key (v1.2.1 lets the template win)."""
    own = {**((node.template.get("metadata") or {}).get("labels") or {}), **extra}
    ray = dict(zip(RAY_LABELS, ("yes", node.node_type, node.group), strict=True))
    return {**ray, **own}


def pod_template(
    node: RayNode,
    *,
    port: str,
    operator: Operator,
    overwrite_command: bool,
    extra_labels: Mapping[str, str],
) -> Object:
    """The node's pod template after KubeRay's changes, for a Phalanx entry (head) or worker pod."""
    spec: Object = copy.deepcopy(dict(node.template.get("spec") or {}))
    ray: Object = spec["containers"][0]
    if node.node_type == "worker":
        spec.setdefault("initContainers", []).append(_wait_for_head(ray, port))
    _metrics_port(ray)
    params = start_params(node, port, operator)
    ray_start = start_command(node.node_type, params)
    _shared_memory(spec, ray)
    _command(ray, ray_start, overwrite_command)
    for init in spec.get("initContainers") or []:
        env: list[Any] = init.setdefault("env", [])
        _append(env, "FQ_RAY_IP", _value(ENTRY), always=True)
        _append(env, "RAY_IP", _value(ENTRY), always=True)
    _ray_env(ray, node, params, port, ray_start)
    if operator.inject_probes:
        _probes(ray, node.node_type)
    metadata: Object = {"labels": _labels(node, extra_labels)}
    annotations = (node.template.get("metadata") or {}).get("annotations")
    if annotations:
        metadata["annotations"] = copy.deepcopy(dict(annotations))
    return {"metadata": metadata, "spec": spec}
