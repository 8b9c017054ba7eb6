"""A real Kubernetes control plane on loopback, for the cluster test tier and `bench/operator`.

The session fixture ``control_plane`` starts, each in its own process group and with its log in a temp dir:
etcd, kube-apiserver (RBAC on, client-cert admin, service-account tokens signed with a generated key),
kube-controller-manager, kube-scheduler, the KWOK controller (plays kubelet for fake nodes: bound pods become
Running/Ready) and Volcano's vc-scheduler (gang scheduling; Volcano CRDs installed, the ``default``
Queue Open). Binaries come from ``hack/control-plane/build.sh`` (its env file) or from the override
directories ``PHALANX_CONTROL_PLANE_BIN`` / ``KUBEBUILDER_ASSETS``; when they are missing the tier is skipped
with the command that builds them. Teardown terminates every process group it started and checks that none
is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Namespace, Node, Pod, ServiceAccount
from lightkube.types import PatchType

from phalanx.runtimes.local.procs import group_alive

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack" / "control-plane"
# Phalanx's own CustomResourceDefinitions (generated, checked against the API models).
PHALANX_CRDS = ROOT / "deploy" / "crds"
BUILD_CMD = "hack/control-plane/build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "vc-scheduler")
SERVICE_CIDR = "10.0.0.0/16"  # room for 1000s of ClusterIP Services: each ModelServing has one
START_TIMEOUT = 90.0
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"

PodGroup = create_namespaced_resource("scheduling.volcano.sh", "v1beta1", "PodGroup", "podgroups")
Queue = create_global_resource("scheduling.volcano.sh", "v1beta1", "Queue", "queues")

VOLCANO_SCHEDULER_CONF = """\
actions: "enqueue, allocate, backfill"
tiers:
- plugins:
  - name: priority
  - name: gang
  - name: conformance
- plugins:
  - name: overcommit
  - name: drf
  - name: predicates
  - name: proportion
  - name: nodeorder
"""


# ---------------------------------------------------------------------------------------------------------
# Locating binaries
# ---------------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("PHALANX_CACHE_DIR")
    if base:
        return Path(base) / "control-plane"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "phalanx" / "control-plane"


def locate_binaries() -> dict[str, Path]:
    """Override dirs first, then the build script's env file. Missing binaries are simply absent."""
    found: dict[str, Path] = {}
    for var in ("PHALANX_CONTROL_PLANE_BIN", "KUBEBUILDER_ASSETS"):
        d = os.environ.get(var)
        if not d:
            continue
        for name in BINARIES:
            p = Path(d) / name
            if name not in found and p.is_file() and os.access(p, os.X_OK):
                found[name] = p
    for key, p in env_file_paths().items():
        if not key.startswith("PHALANX_BIN_"):
            continue
        name = key.removeprefix("PHALANX_BIN_").lower().replace("_", "-")
        if name not in found and p.is_file() and os.access(p, os.X_OK):
            found[name] = p
    return found


def env_file_paths() -> dict[str, Path]:
    """The build script's env file: each KEY=/abs/path line."""
    env_file = Path(os.environ.get("PHALANX_CONTROL_PLANE_ENV", cache_dir() / "env"))
    if not env_file.is_file():
        return {}
    lines = (line.partition("=") for line in env_file.read_text().splitlines())
    return {key: Path(value) for key, sep, value in lines if sep and not key.startswith("#")}


def keda_scaledobject_crd() -> Path | None:
    """KEDA's ScaledObject CRD as `build.sh keda` copied it out of KEDA's Go module; None if absent.
    Found in the cache too, since a build.sh without `keda` rewrites the env file without it."""
    path = env_file_paths().get("PHALANX_CRD_KEDA_SCALEDOBJECTS")
    if path is not None and path.is_file():
        return path
    return max(cache_dir().glob("keda-*/crds/keda.sh_scaledobjects.yaml"), default=None)


# ---------------------------------------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25, on_timeout: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; exceptions count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:  # any error is 'not yet' while polling
            last_exc = exc
        else:
            if result:
                return result
        time.sleep(interval)
    detail = f" (last error: {last_exc!r})" if last_exc else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{on_timeout}")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> None:
    """CA, apiserver serving cert, admin client cert (system:masters) and the service-account key pair."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3", "-subj",
            "/CN=phalanx-test-ca", cwd=d)  # fmt: skip
    certs = {
        "apiserver": (
            "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
            "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        ),
        "admin": (
            "/O=system:masters/CN=phalanx-admin",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        ),
    }
    for name, (subj, ext) in certs.items():
        (d / f"{name}.ext").write_text(ext)
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "3", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)  # fmt: skip
    openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "phalanx", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(pki / "admin.crt"),
                    "client-key": str(pki / "admin.key"),
                },
            }
        ],
        "contexts": [{"name": "phalanx", "context": {"cluster": "phalanx", "user": "admin"}}],
        "current-context": "phalanx",
    }
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML; Go and lightkube both read it


# ---------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@dataclass
class ControlPlane:
    """What the cluster tests get: addresses, credentials and helpers for fake nodes and pod faults."""

    workdir: Path
    kubeconfig: Path
    server: str
    ca_file: Path
    components: dict[str, Component] = field(default_factory=dict)
    _client: Client | None = None

    # -- clients ---------------------------------------------------------------------------------------
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                KubeConfig.from_file(self.kubeconfig),
                timeout=httpx2.Timeout(15.0),
                field_manager="phalanx-tests",
            )
        return self._client

    def http(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        """Plain HTTPS call; with ``token`` as that bearer, else as the admin client cert."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        headers = {"Accept": accept}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        else:
            pki = self.ca_file.parent
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=15) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            with err:
                raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")

    def service_account_kubeconfig(self, namespace: str, account: str, path: Path) -> tuple[Path, str]:
        """A kubeconfig that acts as the ServiceAccount (a TokenRequest token, one hour), and the token."""
        code, answer = self.http(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            body={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
        if code != 201:
            raise RuntimeError(f"TokenRequest for {namespace}/{account} answered {code}: {answer}")
        token: str = answer["status"]["token"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {"name": "test", "context": {"cluster": "test", "user": account, "namespace": namespace}}
            ],
            "current-context": "test",
        }
        path.write_text(json.dumps(config))
        return path, token

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- namespaces ------------------------------------------------------------------------------------
    def new_namespace(self, prefix: str = "t") -> str:
        """A fresh namespace whose ``default`` ServiceAccount exists (pods are admitted only then)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        c = self.client()
        c.create(Namespace(metadata=ObjectMeta(name=name)))
        wait_for(
            f"ServiceAccount default in {name}", lambda: c.get(ServiceAccount, "default", namespace=name)
        )
        return name

    # -- fake nodes ------------------------------------------------------------------------------------
    def add_gpu_node(
        self,
        name: str,
        *,
        gpus: int = 8,
        cpu: str = "64",
        memory: str = "512Gi",
        pods: int = 110,
        zone: str = "zone-a",
        rack: str = "rack-1",
        labels: dict[str, str] | None = None,
        gpu_product: str = "NVIDIA-H100-80GB-HBM3",
        wait_ready: bool = True,
    ) -> dict[str, Any]:
        """Register a KWOK-managed fake node with ``nvidia.com/gpu`` capacity and topology labels."""
        capacity = {
            "cpu": cpu,
            "memory": memory,
            "pods": str(pods),
            "ephemeral-storage": "1Ti",
            "nvidia.com/gpu": str(gpus),
        }
        all_labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            "topology.kubernetes.io/zone": zone,
            "topology.phalanx.dev/rack": rack,
            "nvidia.com/gpu.product": gpu_product,
            "nvidia.com/gpu.count": str(gpus),
            **(labels or {}),
        }
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": all_labels, "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
            "spec": {},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
            },
        }
        c = self.client()
        c.create(from_dict(node))
        # Status given on create is kept by current apiservers; patch it anyway so older ones agree.
        c.patch(Node.Status, name, {"status": node["status"]}, patch_type=PatchType.MERGE)
        if wait_ready:
            wait_for(f"node {name} Ready", lambda: self.node_ready(name), timeout=60)
        return node

    def node_ready(self, name: str) -> bool:
        n = self.client().get(Node, name)
        conds = (n.status.conditions if n.status else None) or []
        ready = any(cd.type == "Ready" and cd.status == "True" for cd in conds)
        taints = (n.spec.taints if n.spec else None) or []
        # The node-lifecycle controller removes the not-ready taint shortly after Ready.
        return ready and not any(t.key == "node.kubernetes.io/not-ready" for t in taints)

    def delete_node(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            self.client().delete(Node, name)

    # -- pod faults ------------------------------------------------------------------------------------
    def fail_pod(self, name: str, namespace: str, *, reason: str = "Error", exit_code: int = 1) -> None:
        """Make a pod fail the way a kubelet reports it: phase Failed, containers terminated, not Ready.

        KWOK's pod-ready stage only acts on Pending pods, so the status sticks.
        """
        c = self.client()
        pod = c.get(Pod, name, namespace=namespace)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        statuses = [
            {
                "name": ctr.name,
                "image": ctr.image or "",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": reason,
                        "startedAt": now,
                        "finishedAt": now,
                    }
                },
            }
            for ctr in pod.spec.containers
        ]
        cond = [
            {"type": t, "status": "False", "lastTransitionTime": now, "reason": reason}
            for t in ("Ready", "ContainersReady")
        ]
        c.patch(
            Pod.Status,
            name,
            {
                "status": {
                    "phase": "Failed",
                    "reason": reason,
                    "containerStatuses": statuses,
                    "conditions": cond,
                }
            },
            namespace=namespace,
            patch_type=PatchType.STRATEGIC,
        )

    def remove_pod(self, name: str, namespace: str) -> None:
        """Make a pod disappear at once (force delete, as after node loss): no graceful termination."""
        with contextlib.suppress(ApiError):
            self.client().delete(Pod, name, namespace=namespace, grace_period=0)

    # -- Volcano -----------------------------------------------------------------------------------------
    def open_queue(self, name: str, *, weight: int = 1, create: bool = True) -> bool:
        """Make a Volcano Queue usable: create it if asked and set ``status.state: Open``.

        That state is normally written by vc-controller-manager's queue controller, which is not run here;
        vc-scheduler rejects every job of a queue that is not Open ("is not open state, reject job").
        """
        c = self.client()
        try:
            c.get(Queue, name)
        except ApiError as err:
            if err.status.code != 404 or not create:
                raise
            with contextlib.suppress(ApiError):
                c.create(Queue(metadata=ObjectMeta(name=name), spec={"weight": weight, "reclaimable": True}))
            return False
        c.patch(Queue.Status, name, {"status": {"state": "Open"}}, patch_type=PatchType.MERGE)
        return c.get(Queue, name).status.get("state") == "Open"

    # -- diagnostics -----------------------------------------------------------------------------------
    def logs(self, lines: int = 60) -> str:
        parts = []
        for comp in self.components.values():
            state = "running" if comp.alive() else f"exited {comp.proc.returncode}"
            parts.append(f"===== {comp.name} ({state}) {comp.log} =====\n{comp.tail(lines)}")
        return "\n".join(parts)


class Launcher:
    """Starts components in their own process groups and stops them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.components: dict[str, Component] = {}

    def start(self, name: str, argv: list[str]) -> Component:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as fh:
            fh.write(("$ " + " ".join(argv) + "\n").encode())
            fh.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group: teardown kills the whole group
            )
        comp = Component(name, proc, log)
        self.components[name] = comp
        return comp

    def stop_all(self, grace: float = 10.0) -> list[str]:
        """SIGTERM every group (reverse start order), SIGKILL stragglers; returns what was still alive."""
        comps = list(reversed(self.components.values()))
        for comp in comps:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(comp.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for comp in comps:
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        leftovers = []
        for comp in comps:
            if group_alive(comp.proc.pid):
                leftovers.append(comp.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(comp.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=5)
        # Verify: no process of any group we started may remain.
        still = [c.name for c in comps if group_alive(c.proc.pid)]
        if still:
            raise RuntimeError(f"control-plane processes survived SIGKILL: {still}")
        return leftovers


# ---------------------------------------------------------------------------------------------------------
# Bring-up
# ---------------------------------------------------------------------------------------------------------


def http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def insecure_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_component(comp: Component, what: str, check: Callable[[], Any]) -> None:
    """Wait until ``check`` passes; fail at once (with the log tail) when the process exits."""
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if not comp.alive():
            raise RuntimeError(f"{comp.name} exited with {comp.proc.returncode}:\n{comp.tail(40)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{comp.name}: {what} not reached in {START_TIMEOUT:.0f}s:\n{comp.tail(40)}")
        time.sleep(0.25)


def install_crds(client: Client, directory: Path) -> list[str]:
    names = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            crd = from_dict(doc)
            try:
                client.create(crd)
            except ApiError as err:
                if err.status.code != 409:
                    raise
            names.append(doc["metadata"]["name"])

    def established(name: str) -> bool:
        crd = client.get(CustomResourceDefinition, name)
        conds = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    for name in names:
        wait_for(f"CRD {name} Established", lambda n=name: established(n), timeout=30)
    return names


def start_control_plane(
    bins: dict[str, Path],
    workdir: Path,
    launcher: Launcher,
    apiserver_args: tuple[str, ...] = (),
    controller_manager_args: tuple[str, ...] = (),
) -> ControlPlane:
    pki = workdir / "pki"
    make_pki(pki)
    localhost = "127.0.0.1"

    # etcd -------------------------------------------------------------------------------------------
    etcd_client, etcd_peer = free_port(), free_port()
    etcd = launcher.start(
        "etcd",
        [
            str(bins["etcd"]),
            "--name=default",
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://{localhost}:{etcd_client}",
            f"--advertise-client-urls=http://{localhost}:{etcd_client}",
            f"--listen-peer-urls=http://{localhost}:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://{localhost}:{etcd_peer}",
            f"--initial-cluster=default=http://{localhost}:{etcd_peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
    )
    wait_component(etcd, "/health", lambda: http_ok(f"http://{localhost}:{etcd_client}/health"))

    # kube-apiserver ---------------------------------------------------------------------------------
    api_port = free_port()
    server = f"https://{localhost}:{api_port}"
    apiserver = launcher.start(
        "kube-apiserver",
        [
            str(bins["kube-apiserver"]),
            f"--etcd-servers=http://{localhost}:{etcd_client}",
            f"--bind-address={localhost}",
            f"--advertise-address={localhost}",
            f"--secure-port={api_port}",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--allow-privileged=true",
            # The lease reconciler would publish the loopback advertise address as the `kubernetes`
            # Service endpoint, which validation rejects; nothing in-cluster needs it here.
            "--endpoint-reconciler-type=none",
            "--v=1",
            *apiserver_args,
        ],
    )
    admin_ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    admin_ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    wait_component(apiserver, "/readyz", lambda: http_ok(f"{server}/readyz", admin_ctx))

    kubeconfig = workdir / "kubeconfig"
    write_kubeconfig(kubeconfig, server, pki)
    cp = ControlPlane(
        workdir=workdir,
        kubeconfig=kubeconfig,
        server=server,
        ca_file=pki / "ca.crt",
        components=launcher.components,
    )
    client = cp.client()
    install_crds(client, HACK / "volcano" / "crds")

    # kube-controller-manager -----------------------------------------------------------------------
    kcm_port = free_port()
    kcm = launcher.start(
        "kube-controller-manager",
        [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={localhost}",
            f"--secure-port={kcm_port}",
            f"--cert-dir={workdir / 'kcm-certs'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller",
            "--node-monitor-grace-period=40s",
            "--v=1",
            *controller_manager_args,  # later flags win: a caller may override the ones above
        ],
    )
    # kube-scheduler ---------------------------------------------------------------------------------
    sched_port = free_port()
    sched = launcher.start(
        "kube-scheduler",
        [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={localhost}",
            f"--secure-port={sched_port}",
            f"--cert-dir={workdir / 'scheduler-certs'}",
            "--leader-elect=false",
            "--v=1",
        ],
    )
    # KWOK -------------------------------------------------------------------------------------------
    stages = workdir / "kwok-stages.yaml"
    stages.write_text(
        "\n---\n".join(p.read_text().strip() for p in sorted((HACK / "kwok" / "stages").glob("*.yaml")))
        + "\n"
    )
    kwok_port = free_port()
    kwok = launcher.start(
        "kwok",
        [
            str(bins["kwok"]),
            f"--kubeconfig={kubeconfig}",
            f"--config={stages}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            # Node Leases renewed like a kubelet's: without them a heartbeat delayed past the node
            # monitor grace period marks long-lived fake nodes (and their pods) not ready.
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.96.0.1",
            f"--server-address={localhost}:{kwok_port}",
        ],
    )
    # Volcano vc-scheduler ---------------------------------------------------------------------------
    conf = workdir / "volcano-scheduler.conf"
    conf.write_text(VOLCANO_SCHEDULER_CONF)
    vc_health, vc_metrics = free_port(), free_port()
    vc = launcher.start(
        "vc-scheduler",
        [
            str(bins["vc-scheduler"]),
            f"--kubeconfig={kubeconfig}",
            f"--scheduler-conf={conf}",
            "--scheduler-name=volcano",
            "--leader-elect=false",
            "--schedule-period=500ms",
            "--enable-healthz=true",
            f"--healthz-address={localhost}:{vc_health}",
            f"--listen-address={localhost}:{vc_metrics}",
            f"--cache-dump-dir={workdir}",
            f"--v={os.environ.get('PHALANX_VC_SCHEDULER_V', '2')}",
        ],
    )

    insecure = insecure_ctx()
    wait_component(kcm, "/healthz", lambda: http_ok(f"https://{localhost}:{kcm_port}/healthz", insecure))
    wait_component(sched, "/healthz", lambda: http_ok(f"https://{localhost}:{sched_port}/healthz", insecure))
    wait_component(kwok, "/healthz", lambda: http_ok(f"http://{localhost}:{kwok_port}/healthz"))
    wait_component(vc, "/healthz", lambda: http_ok(f"http://{localhost}:{vc_health}/healthz"))

    # Service-account tokens work once the SA controller made `default` (and the token controller can sign).
    wait_for(
        "ServiceAccount default/default",
        lambda: client.get(ServiceAccount, "default", namespace="default"),
        60,
    )

    # vc-scheduler creates the `default` and `root` Queues itself, but only vc-controller-manager (not run
    # here) would move them to state Open; the scheduler rejects jobs of a queue that is not Open.
    for queue in ("root", "default"):
        wait_for(f"Volcano Queue {queue} Open", lambda q=queue: cp.open_queue(q), timeout=60)
    return cp


class ControlPlaneUnavailable(Exception):
    """The binaries or tools a control plane needs are missing; the message says how to get them."""


@contextlib.contextmanager
def running_control_plane(
    apiserver_args: tuple[str, ...] = (), controller_manager_args: tuple[str, ...] = ()
) -> Iterator[ControlPlane]:
    """Start every component in a fresh temp dir; on exit stop them all and check none is left."""
    bins = locate_binaries()
    missing = [b for b in BINARIES if b not in bins]
    if missing:
        raise ControlPlaneUnavailable(
            f"control-plane binaries missing ({', '.join(missing)}); build them with `{BUILD_CMD}` "
            "(cold: tens of minutes) or point PHALANX_CONTROL_PLANE_BIN at a directory holding them"
        )
    if shutil.which("openssl") is None:
        raise ControlPlaneUnavailable(
            "openssl CLI not found (needed to generate the control plane's certificates)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="phalanx-cp-"))
    launcher = Launcher(workdir)
    cp: ControlPlane | None = None
    try:
        try:
            cp = start_control_plane(bins, workdir, launcher, apiserver_args, controller_manager_args)
        except BaseException:
            print("control plane failed to start; component logs:")
            for comp in launcher.components.values():
                print(f"===== {comp.name} {comp.log} =====\n{comp.tail(80)}")
            raise
        yield cp
    finally:
        if cp is not None:
            cp.close()
        leftovers = launcher.stop_all()
        if leftovers:
            print(f"control plane: needed SIGKILL for {leftovers}")
        if os.environ.get("PHALANX_KEEP_CONTROL_PLANE_DIR"):
            print(f"control plane workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def operator_process(
    cp: ControlPlane,
    namespace: str | None,
    workdir: Path,
    *,
    lease_namespace: str | None = None,
    extra_args: tuple[str, ...] = (),
    kubeconfig: Path | None = None,
    name: str = "operator",
) -> Iterator[subprocess.Popen[bytes]]:
    """`phalanx operator` as a child process in its own group; its log tail is printed on exit."""
    log = workdir / f"{name}-{namespace or 'all'}.log"
    command = [
        sys.executable, "-m", "phalanx", "operator", "--kubeconfig", str(kubeconfig or cp.kubeconfig),
        "--lease-namespace", lease_namespace or namespace or "default", "--health-port", str(free_port()),
        *(["--namespace", namespace] if namespace else []), *extra_args,
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        stop_process_group(process)
        # Captured by pytest, shown when a test fails.
        tail = log.read_text(errors="replace")[-8000:]
        print(f"{name} exited with {process.returncode}; its log:\n{tail}")


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
