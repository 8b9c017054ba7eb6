"""The contenders of bench_operator: `phalanx operator` and LeaderWorkerSet's manager, each started
under a ServiceAccount of its own (so the audit log tells their requests apart), and the objects each
is given: the same pods, four to a group, in the shape that contender is asked to run."""

from __future__ import annotations

import contextlib
import copy
import io
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lws
from lightkube.codecs import from_dict
from observe import Shape
from tests.cluster.controlplane import ControlPlane, free_port, operator_process

OPERATOR_NAMESPACE = "phalanx-system"
OPERATOR_ACCOUNT = "phalanx-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
PHALANX_API = "serving.phalanx.dev/v1alpha1"
PREFIX = "bench"
POOL_LABEL = "phalanx.dev/pool"
POOL = "bench"
LWS_LEASE = "b8b2488c.x-k8s.io"  # the manager's leader-election Lease (its built-in name)

# Who is audited for each contender, by the name the report gives them.
AUDITED = {
    "phalanx": {"controller": OPERATOR_USER},
    "lws": {"controller": lws.USER, "statefulset-controller": lws.STATEFULSET_USER},
}


def pod_spec(container: str, ports: list[dict[str, Any]], gpus: int) -> dict[str, Any]:
    """Every pod of both contenders: 100m CPU, 256Mi, `gpus` GPUs, the same image, on the bench's nodes."""
    resources = {"cpu": "100m", "memory": "256Mi", "nvidia.com/gpu": str(gpus)}
    return {
        "nodeSelector": {POOL_LABEL: POOL},
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": container,
                "image": "engine:v1",
                "ports": ports,
                "resources": {"requests": resources, "limits": resources},
            }
        ],
    }


def entry_and_worker(gpus: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return pod_spec("entry", [{"name": "http", "containerPort": 8000}], gpus), pod_spec("worker", [], gpus)


def model_serving(namespace: str, name: str, replicas: int, workers: int, gpus: int) -> dict[str, Any]:
    """`replicas` groups of one role instance: an entry pod and `workers` worker pods. `schedulerName`
    is left to its default, volcano, so every group is a Volcano PodGroup."""
    entry, worker = entry_and_worker(gpus)
    role = {
        "name": "engine",
        "workerReplicas": workers,
        "entryTemplate": {"spec": entry},
        "workerTemplate": {"spec": worker},
    }
    return {
        "apiVersion": PHALANX_API,
        "kind": "ModelServing",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "template": {"roles": [role]}},
    }


def manifests(shape: Shape, namespace: str, workers: int, gpus: int) -> list[dict[str, Any]]:
    if shape.controller == "phalanx":
        return [
            model_serving(namespace, name, shape.replicas, workers, gpus)
            for name in shape.object_names(PREFIX)
        ]
    entry, worker = entry_and_worker(gpus)
    return [
        lws.leader_worker_set(namespace, name, shape.replicas, 1 + workers, entry, worker)
        for name in shape.object_names(PREFIX)
    ]


def collection(shape: Shape, namespace: str) -> str:
    """The API path of the contender's objects in `namespace`."""
    if shape.controller == "phalanx":
        return f"/apis/{PHALANX_API}/namespaces/{namespace}/modelservings"
    return f"/apis/{lws.GROUP_VERSION}/namespaces/{namespace}/leaderworkersets"


def service_identity(cp: ControlPlane, namespace: str, account: str, path: Path) -> None:
    """A ServiceAccount bound to cluster-admin and a kubeconfig with its token; checks who it is."""
    client = cp.client()
    user = f"system:serviceaccount:{namespace}:{account}"
    for doc in (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": account},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ):
        client.create(from_dict(copy.deepcopy(doc)))
    _, token = cp.service_account_kubeconfig(namespace, account, path)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, body = cp.http(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", token=token, body=review
    )
    username = (body.get("status") or {}).get("userInfo", {}).get("username") if code == 201 else None
    if username != user:
        raise RuntimeError(f"the token of {account} authenticates as {username!r} ({code}), not {user}")


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def metric(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@dataclass
class Controller:
    """A running contender: its process, whether it leads yet, its metrics (ours only) and its log."""

    pid: int
    leading: Callable[[], bool]
    metrics: Callable[[], str]
    log: Path
    warning_marks: tuple[str, ...]  # what marks a warning or error line in its log


@contextlib.contextmanager
def controller(cp: ControlPlane, shape: Shape, out: Path, operator_workers: int) -> Iterator[Controller]:
    kubeconfig = out / f"{shape.controller}.kubeconfig"
    if shape.controller == "lws":
        service_identity(cp, lws.NAMESPACE, lws.ACCOUNT, kubeconfig)
        with lws.manager_process(cp, kubeconfig, out) as (process, health):

            def lws_leading() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"the LWS manager exited with {process.returncode}; see {out}")
                code, lease = cp.http("GET", f"/apis/coordination.k8s.io/v1/namespaces/{lws.NAMESPACE}"
                                      f"/leases/{LWS_LEASE}")  # fmt: skip
                held = code == 200 and bool((lease.get("spec") or {}).get("holderIdentity"))
                return held and http_get(f"http://127.0.0.1:{health}/readyz") == "ok"

            yield Controller(process.pid, lws_leading, str, out / "lws-manager.log",
                             ('"level":"error"', '"level":"warn"'))  # fmt: skip
        return
    service_identity(cp, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, kubeconfig)
    port = free_port()
    operator_args = ("--health-port", str(port), "--workers", str(operator_workers))
    sink = io.StringIO()  # operator_process prints the log tail on exit; the whole log is in `out`
    with (
        contextlib.redirect_stdout(sink),
        operator_process(cp, None, out, kubeconfig=kubeconfig, extra_args=operator_args) as operator,
    ):

        def metrics() -> str:
            return http_get(f"http://127.0.0.1:{port}/metrics")

        def leading() -> bool:
            if operator.poll() is not None:
                raise RuntimeError(f"the operator exited with {operator.returncode}; see {out}")
            return metric(metrics(), "phalanx_operator_leader") == 1.0

        yield Controller(operator.pid, leading, metrics, out / "operator-all.log", (" WARNING ", " ERROR "))
