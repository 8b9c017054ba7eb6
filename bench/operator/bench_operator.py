"""Measures `phalanx operator` bringing up many ServingGroups on a real control plane with fake nodes.

    .venv/bin/python bench/operator/bench_operator.py            # 100 groups x 4 pods on 100 nodes

One run: start the test control plane (`tests/cluster/controlplane.py`: etcd, kube-apiserver with an
audit log, controller-manager, kube-scheduler, KWOK, Volcano's vc-scheduler), register `--nodes`
KWOK nodes with 8 GPUs each (this script renews their node Leases every 10 s, as kubelets do; see
`NodeLeases`), start `phalanx operator` under a service account of its own, create
one ModelServing of `--replicas` ServingGroups (one role: an entry pod and `--workers-per-group`
worker pods, `--gpus-per-pod` GPUs each, gang-scheduled by Volcano), and wait until its status
reports every group available. Then let it run `--settle` seconds more and stop everything.

It reports:
- times from creating the ModelServing: first and last pod created, bound by the scheduler,
  Running, Ready (seen by a watch of this script), and the status's availableReplicas reaching
  1 and all; per group, the delay from its last pod Ready to the status calling the group Ready;
- the API requests the operator made, counted by the API server's audit log (only the
  operator's user is audited), by verb and resource, per phase (start-up, bring-up, settle), and
  whether its creates were issued one at a time (server time vs the operator's time between them);
- the operator process's peak RSS (VmHWM) and CPU time, and the CPU time of every control-plane
  component during the bring-up, with the machine's load average before and after.

Progress goes to stderr, the summary to stdout; everything (summary JSON, operator log, audit log)
stays in the `--out` directory.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import os
import platform
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the control plane lives in tests/
    sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import yaml  # noqa: E402
from lightkube import Client, KubeConfig  # noqa: E402
from lightkube.codecs import from_dict  # noqa: E402
from lightkube.core.exceptions import ApiError  # noqa: E402
from lightkube.models.coordination_v1 import LeaseSpec  # noqa: E402
from lightkube.models.meta_v1 import ObjectMeta  # noqa: E402
from lightkube.resources.coordination_v1 import Lease  # noqa: E402
from lightkube.resources.core_v1 import Node  # noqa: E402
from lightkube.types import PatchType  # noqa: E402
from tests.cluster.controlplane import (  # noqa: E402
    PHALANX_CRDS,
    ControlPlane,
    free_port,
    install_crds,
    operator_process,
    running_control_plane,
    wait_for,
)

from phalanx.api import labels as L  # noqa: E402
from phalanx.kube.resources import ModelServingResource  # noqa: E402

OPERATOR_NAMESPACE = "phalanx-system"
OPERATOR_ACCOUNT = "phalanx-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}"
SERVING = "bench"
POOL_LABEL = "phalanx.dev/pool"
POOL = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# The machine and its processes (/proc)
# ---------------------------------------------------------------------------------------------------------


def src_diff() -> bytes:
    """Uncommitted changes under src/: others may be editing this checkout while the bench runs."""
    return subprocess.run(
        ["git", "diff", "HEAD", "--", "src"], cwd=ROOT, capture_output=True, check=False
    ).stdout


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "?"
    )
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    diff = src_diff()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo["MemTotal"].split()[0]) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit + ("+uncommitted changes" if dirty else ""),
        "src_diff_sha256": hashlib.sha256(diff).hexdigest()[:12] if diff else None,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def cpu_busy_seconds() -> tuple[float, float]:
    """Machine-wide (busy, total) CPU seconds since boot, summed over cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return (total - idle) / CLK_TCK, total / CLK_TCK


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (its threads included, waited-for children not)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text.rsplit(")", 1)[1].split()  # rest[0] is field 3 (state); utime is field 14
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def process_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def group_members(pgid: int) -> list[int]:
    """Every live process of a process group (the operator runs in its own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[2]) == pgid:  # field 5: process group
            members.append(int(entry.name))
    return members


class Sampler(threading.Thread):
    """Samples the operator's RSS every half second (VmHWM gives the peak; this gives the curve)."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss sampler", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            with contextlib.suppress(OSError, KeyError):
                self.samples.append((time.time(), process_memory(self.pid)["VmRSS"]))


# ---------------------------------------------------------------------------------------------------------
# What the bench watches: pods and the ModelServing, as the API server reports them
# ---------------------------------------------------------------------------------------------------------


class Watch(threading.Thread):
    """A raw watch of one collection (admin credentials, so not audited), resumed from the last
    resourceVersion every few seconds; ``on_event(type, object, time)`` is called for each event."""

    def __init__(self, cp: ControlPlane, path: str, on_event: Callable[[str, dict[str, Any], float], None]):
        super().__init__(name=f"watch {path}", daemon=True)
        self.cp, self.path, self.on_event = cp, path, on_event
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        pki = cp.ca_file.parent
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def run(self) -> None:
        version = ""
        while not self.stop.is_set():
            query = "watch=1&allowWatchBookmarks=true&timeoutSeconds=5"
            if version:
                query += f"&resourceVersion={version}"
            request = urllib.request.Request(f"{self.cp.server}{self.path}?{query}")
            try:
                with urllib.request.urlopen(request, context=self.ctx, timeout=30) as response:
                    for line in response:
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":  # 410 Gone: start again from a fresh list
                            version = ""
                            break
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if event.get("type") != "BOOKMARK":
                            self.on_event(event["type"], obj, time.time())
            except (OSError, ValueError, urllib.error.URLError) as exc:
                if self.stop.is_set():
                    return
                self.errors.append(repr(exc))
                time.sleep(0.5)


class Observations:
    """When each pod was first seen created, bound, Running and Ready; how the status moved."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.lock = threading.Lock()
        self.pods: dict[str, dict[str, Any]] = {}
        self.available_at: dict[int, float] = {}  # availableReplicas value -> first time seen
        self.group_ready_at: dict[str, float] = {}  # status.groups[].name -> first time phase Ready
        self.status: dict[str, Any] = {}
        self.all_available = threading.Event()

    def on_pod(self, kind: str, pod: dict[str, Any], now: float) -> None:
        metadata, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        with self.lock:
            seen = self.pods.setdefault(metadata.get("name", "?"), {"created": now})
            seen["group"] = (metadata.get("labels") or {}).get(L.GROUP_INDEX)
            if spec.get("nodeName"):
                seen.setdefault("bound", now)
                seen["node"] = spec["nodeName"]
            if status.get("phase") == "Running":
                seen.setdefault("running", now)
            conditions = status.get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                seen.setdefault("ready", now)
            elif "ready" in seen:  # Ready, then not: nothing in this run should do that
                seen["lost_ready"] = seen.get("lost_ready", 0) + 1
            if kind == "DELETED":
                seen["deleted"] = now

    def on_serving(self, kind: str, ms: dict[str, Any], now: float) -> None:
        status = ms.get("status") or {}
        with self.lock:
            self.status = status
            available = int(status.get("availableReplicas") or 0)
            self.available_at.setdefault(available, now)
            for group in status.get("groups") or []:
                if group.get("phase") == "Ready":
                    self.group_ready_at.setdefault(group["name"], now)
            conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        if available >= self.replicas and conditions.get("Available") == "True":
            self.all_available.set()

    def progress(self) -> str:
        with self.lock:
            pods = list(self.pods.values())
            return (
                f"pods created {len(pods)}, bound {sum('bound' in p for p in pods)}, "
                f"Running {sum('running' in p for p in pods)}, Ready {sum('ready' in p for p in pods)}; "
                f"availableReplicas {self.status.get('availableReplicas', 0)}"
            )


# ---------------------------------------------------------------------------------------------------------
# The workload and the operator's identity
# ---------------------------------------------------------------------------------------------------------


def model_serving(namespace: str, replicas: int, workers: int, gpus: int) -> dict[str, Any]:
    """`replicas` groups of one role instance: an entry pod and `workers` worker pods, `gpus` GPUs each."""

    def template(container: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
        resources = {"cpu": "100m", "memory": "256Mi", "nvidia.com/gpu": str(gpus)}
        return {
            "spec": {
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
        }

    return {
        "apiVersion": L.GROUP_VERSION,
        "kind": "ModelServing",
        "metadata": {"name": SERVING, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "template": {
                "roles": [
                    {
                        "name": "engine",
                        "workerReplicas": workers,
                        "entryTemplate": template("entry", [{"name": "http", "containerPort": 8000}]),
                        "workerTemplate": template("worker", []),
                    }
                ]
            },
        },
    }


def operator_kubeconfig(cp: ControlPlane, path: Path) -> None:
    """A service account of its own bound to cluster-admin, so the audit log can pick out its requests."""
    client = cp.client()
    for doc in (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": OPERATOR_ACCOUNT},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
            ],
        },
    ):
        client.create(from_dict(doc))
    _, token = cp.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, path)
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, body = cp.http(
        "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", token=token, body=review
    )
    username = (body.get("status") or {}).get("userInfo", {}).get("username") if code == 201 else None
    if username != OPERATOR_USER:
        raise RuntimeError(
            f"the operator's token authenticates as {username!r} ({code}), not {OPERATOR_USER}"
        )


def audit_args(directory: Path) -> tuple[str, ...]:
    """Audit only the operator's user, once per request (when its response is complete)."""
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policy.yaml").write_text(yaml.safe_dump(policy))
    return (
        f"--audit-policy-file={directory / 'policy.yaml'}",
        f"--audit-log-path={directory / 'audit.log'}",
        "--audit-log-format=json",
        "--audit-log-maxsize=1024",
        "--audit-log-maxbackup=10",
    )


def read_audit(directory: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(directory.glob("audit*.log")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete" or event["user"]["username"] != OPERATOR_USER:
                continue
            if event.get("userAgent", "").startswith("Python-urllib"):
                continue  # this script checking the operator's token (SelfSubjectReview), not the operator
            ref = event.get("objectRef") or {}
            resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            events.append(
                {
                    "at": datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp(),
                    "done": datetime.fromisoformat(event["stageTimestamp"]).timestamp(),
                    "verb": event["verb"],
                    "resource": resource,
                    "code": (event.get("responseStatus") or {}).get("code", 0),
                }
            )
    return events


def writes_in_bring_up(audit: list[dict[str, Any]], created: float, available: float) -> dict[str, Any]:
    """How the operator issued the creates that build the groups: one after another or several at once,
    and how their time splits into the API server answering and the operator between two requests."""
    creates = sorted(
        (e for e in audit if e["verb"] == "create" and created <= e["at"] < available),
        key=lambda e: e["at"],
    )
    if not creates:
        return {}
    pairs = list(itertools.pairwise(creates))
    status = [e["at"] for e in audit if e["resource"].endswith("/status") and e["at"] >= created]
    return {
        "creates": len(creates),
        "first_s": round(creates[0]["at"] - created, 2),
        "last_done_s": round(creates[-1]["done"] - created, 2),
        "overlapping": sum(1 for a, b in pairs if b["at"] < a["done"]),
        "server_s": round(sum(e["done"] - e["at"] for e in creates), 2),
        "between_s": round(sum(max(b["at"] - a["done"], 0.0) for a, b in pairs), 2),
        "first_status_write_s": round(min(status) - created, 2) if status else None,
    }


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def metric(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


class NodeLeases(threading.Thread):
    """Renews a kube-node-lease Lease for every fake node every 10 s, as a kubelet does.

    KWOK's default node-heartbeat stage (vendored in hack/control-plane/kwok/stages) writes a node's
    status every 20 s plus up to 25 s of jitter, while the control plane runs the node-lifecycle
    controller with --node-monitor-grace-period=40s: a heartbeat that comes late makes the node
    NotReady for a moment, and the controller then marks its pods Ready=False for good (no kubelet
    puts them back). The node-lifecycle controller also takes a renewed node Lease as a heartbeat.
    """

    def __init__(self, cp: ControlPlane, names: list[str]) -> None:
        super().__init__(name="node leases", daemon=True)
        self.names = names
        self.client = Client(KubeConfig.from_file(cp.kubeconfig), field_manager="phalanx-bench")
        self.stop = threading.Event()
        self.errors = 0

    def renew(self, create: bool) -> None:
        now = datetime.now(UTC)
        for name in self.names:
            spec = {"renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
            try:
                if create:
                    lease = Lease(
                        metadata=ObjectMeta(name=name, namespace="kube-node-lease"),
                        spec=LeaseSpec(holderIdentity=name, leaseDurationSeconds=40, renewTime=now),
                    )
                    self.client.create(lease)
                else:
                    self.client.patch(
                        Lease, name, {"spec": spec}, namespace="kube-node-lease", patch_type=PatchType.MERGE
                    )
            except (ApiError, OSError, httpx2.HTTPError):
                self.errors += 1

    def run(self) -> None:
        while not self.stop.wait(10.0):
            self.renew(create=False)

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        self.client.close()


def add_nodes(cp: ControlPlane, count: int, *, timeout: float) -> NodeLeases:
    say(f"registering {count} fake 8-GPU nodes")
    names = [f"bench-n{index:03d}" for index in range(count)]
    for name in names:
        cp.add_gpu_node(name, gpus=8, cpu="64", memory="512Gi", pods=110,
                        labels={POOL_LABEL: POOL}, wait_ready=False)  # fmt: skip
    leases = NodeLeases(cp, names)
    leases.renew(create=True)
    leases.start()

    def all_ready() -> bool:
        nodes = list(cp.client().list(Node, labels={POOL_LABEL: POOL}))
        ready = 0
        for node in nodes:
            conditions = (node.status.conditions if node.status else None) or []
            taints = (node.spec.taints if node.spec else None) or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions) and not taints:
                ready += 1
        return ready == count

    wait_for(f"{count} nodes Ready and untainted", all_ready, timeout=timeout, interval=1.0)
    return leases


def wait_event(event: threading.Event, what: str, timeout: float, progress: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not event.wait(10.0):
        say(f"  ... {progress()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {progress()}")


@contextlib.contextmanager
def watching(cp: ControlPlane, namespace: str, seen: Observations) -> Iterator[list[Watch]]:
    watches = [
        Watch(cp, f"/api/v1/namespaces/{namespace}/pods", seen.on_pod),
        Watch(cp, f"/apis/{L.GROUP_VERSION}/namespaces/{namespace}/modelservings", seen.on_serving),
    ]
    for watch in watches:
        watch.start()
    try:
        yield watches
    finally:
        for watch in watches:
            watch.stop.set()
        for watch in watches:
            watch.join(timeout=15)


@dataclass
class Measured:
    """What one bring-up left behind, before it is summarised."""

    seen: Observations
    created: float  # wall-clock times: the ModelServing created, all groups available, settle over
    available: float
    settled: float
    cpu: dict[str, tuple[float, float, float]]  # process -> CPU seconds at created, available, settled
    metrics: str  # the operator's /metrics at the end
    memory: dict[str, int]  # the operator's VmRSS and VmHWM (KiB) at the end
    idle_memory: dict[str, int]  # the same just before the ModelServing was created
    children: list[int]  # other processes of the operator's process group
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    machine_busy_bring_up: tuple[float, ...] = (0.0, 1.0)  # machine (busy, total) CPU seconds


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    pods_per_group = 1 + args.workers_per_group
    if args.replicas * pods_per_group * args.gpus_per_pod > args.nodes * 8:
        raise SystemExit("the workload does not fit: replicas x pods x GPUs per pod > nodes x 8")
    result: dict[str, Any] = {"machine": machine_info(), "load_average_start": load_average()}
    (out / "src.diff").write_bytes(src_diff())  # the uncommitted code that was measured, if any
    busy_start, total_start = cpu_busy_seconds()
    times_start = os.times()
    audit_dir = out / "audit"
    with running_control_plane(apiserver_args=audit_args(audit_dir)) as cp:
        say(f"control plane up at {cp.server}")
        install_crds(cp.client(), PHALANX_CRDS)
        with contextlib.closing(add_nodes(cp, args.nodes, timeout=args.timeout)) as leases:
            measured = bring_up(cp, args, out)
        if leases.errors:
            say(f"node leases: {leases.errors} renewals failed")
        time.sleep(1.0)  # the audit log is written as responses complete; let the last ones land
        audit = read_audit(audit_dir)
    busy_end, total_end = cpu_busy_seconds()
    times_end = os.times()
    result["load_average_end"] = load_average()
    log_text = next(out.glob("operator-*.log")).read_text(errors="replace")
    result.update(summarize(args, measured, audit, log_text))
    own = (times_end.user + times_end.system) - (times_start.user + times_start.system)
    result["machine_cpu"] = {
        "busy_fraction": round((busy_end - busy_start) / (total_end - total_start), 3),
        "bench_script_cpu_s": round(own, 1),
    }
    return result


def bring_up(cp: ControlPlane, args: argparse.Namespace, out: Path) -> Measured:
    """Start the operator, create the ModelServing, wait for every group, settle; measure on the way."""
    namespace = cp.new_namespace("bench")
    kubeconfig = out / "operator.kubeconfig"
    operator_kubeconfig(cp, kubeconfig)
    seen = Observations(args.replicas)
    port = free_port()
    operator_args = ("--health-port", str(port), "--workers", str(args.operator_workers))
    sink = io.StringIO()  # operator_process prints the log tail on exit; the whole log is in `out`
    with (
        watching(cp, namespace, seen),
        contextlib.redirect_stdout(sink),
        operator_process(cp, None, out, kubeconfig=kubeconfig, extra_args=operator_args) as operator,
    ):
        pid = operator.pid

        def leading() -> bool:
            if operator.poll() is not None:
                raise RuntimeError(f"the operator exited with {operator.returncode}; see {out}")
            return metric(http_get(f"http://127.0.0.1:{port}/metrics"), "phalanx_operator_leader") == 1.0

        wait_for("the operator to lead", leading, timeout=60)
        sampler = Sampler(pid)
        sampler.start()
        idle = process_memory(pid)
        pids = {name: comp.proc.pid for name, comp in cp.components.items()} | {"operator": pid}
        at_create = {name: process_cpu(p) for name, p in pids.items()}
        busy_create = cpu_busy_seconds()
        say(f"operator leading (pid {pid}, RSS {idle['VmRSS'] / 1024:.0f} MiB); creating the ModelServing")

        created = time.time()
        manifest = model_serving(namespace, args.replicas, args.workers_per_group, args.gpus_per_pod)
        cp.client().create(ModelServingResource.from_dict(manifest))
        wait_event(seen.all_available, f"{args.replicas} groups available", args.timeout, seen.progress)
        available = seen.available_at[args.replicas]
        at_available = {name: process_cpu(p) for name, p in pids.items()}
        busy_available = cpu_busy_seconds()
        say(f"all {args.replicas} groups available after {available - created:.1f}s")
        say(f"settling for {args.settle:.0f}s")
        time.sleep(args.settle)
        settled = time.time()
        at_end = {name: process_cpu(p) for name, p in pids.items()}
        metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        members = group_members(pid)
        memory = process_memory(pid)
        sampler.stop.set()
    return Measured(
        seen=seen,
        created=created,
        available=available,
        settled=settled,
        cpu={name: (at_create[name], at_available[name], at_end[name]) for name in pids},
        metrics=metrics,
        memory=memory,
        idle_memory=idle,
        children=[m for m in members if m != pid],
        rss_samples=sampler.samples,
        machine_busy_bring_up=tuple(b - a for a, b in zip(busy_create, busy_available, strict=True)),
    )


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 2),
        "p90": round(sorted(values)[int(0.9 * (len(values) - 1))], 2),
        "max": round(max(values), 2),
    }


def summarize(
    args: argparse.Namespace, run: Measured, audit: list[dict[str, Any]], log_text: str
) -> dict[str, Any]:
    seen, created, available, settled = run.seen, run.created, run.available, run.settled
    pods = list(seen.pods.values())
    expected = args.replicas * (1 + args.workers_per_group)

    def first_last(stage: str) -> dict[str, float | int | None]:
        times = sorted(p[stage] - created for p in pods if stage in p)
        return {
            "count": len(times),
            "first_s": round(times[0], 2) if times else None,
            "last_s": round(times[-1], 2) if times else None,
        }

    timeline: dict[str, Any] = {
        stage: first_last(stage) for stage in ("created", "bound", "running", "ready")
    }
    timeline["available_1_s"] = round(
        seen.available_at[min(k for k in seen.available_at if k > 0)] - created, 2
    )
    timeline["available_all_s"] = round(available - created, 2)
    # Per pod: waiting for the scheduler, then for KWOK; per group: last pod Ready -> status says Ready.
    scheduling = [p["bound"] - p["created"] for p in pods if "bound" in p]
    starting = [p["ready"] - p["bound"] for p in pods if "ready" in p and "bound" in p]
    groups: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        groups.setdefault(str(pod.get("group")), []).append(pod)
    reporting = []
    for index, members in groups.items():
        ready = seen.group_ready_at.get(f"{SERVING}-{index}")
        if ready is not None and all("ready" in p for p in members):
            reporting.append(ready - max(p["ready"] for p in members))
    nodes = Counter(p.get("node") for p in pods if p.get("node"))

    phases = {"startup": (0.0, created), "bring-up": (created, available), "settle": (available, settled)}

    def phase_of(at: float) -> str:
        return next((name for name, (lo, hi) in phases.items() if lo <= at < hi), "shutdown")

    by_request: dict[str, Counter[str]] = {}
    codes: Counter[str] = Counter()
    for event in audit:
        key = f"{event['verb']} {event['resource']}"
        by_request.setdefault(key, Counter())[phase_of(event["at"])] += 1
        codes[str(event["code"])] += 1
    per_phase = Counter(phase_of(e["at"]) for e in audit)

    reconciles = metric(
        run.metrics, "phalanx_operator_reconcile_duration_seconds_count", '{kind="ModelServing"}'
    )
    reconcile_sum = metric(
        run.metrics, "phalanx_operator_reconcile_duration_seconds_sum", '{kind="ModelServing"}'
    )
    operator_cpu = run.cpu["operator"]
    warnings = [line for line in log_text.splitlines() if " WARNING " in line or " ERROR " in line]
    return {
        "parameters": {
            "replicas": args.replicas,
            "pods_per_group": 1 + args.workers_per_group,
            "gpus_per_pod": args.gpus_per_pod,
            "nodes": args.nodes,
            "operator_workers": args.operator_workers,
            "settle_s": args.settle,
        },
        "timeline_s": timeline,
        "pods_expected": expected,
        "pods_deleted": sum("deleted" in p for p in pods),
        "pods_that_lost_ready": sum("lost_ready" in p for p in pods),
        "nodes_used": len(nodes),
        "pods_per_node": dict(sorted(Counter(nodes.values()).items())),
        "pod_created_to_bound_s": spread(scheduling),
        "pod_bound_to_ready_s": spread(starting),
        "group_pods_ready_to_status_ready_s": spread(reporting),
        "api_requests": {
            "total": len(audit),
            "by_phase": dict(per_phase),
            "bring_up_per_group": round(per_phase["bring-up"] / args.replicas, 1),
            "settle_per_minute": round(per_phase["settle"] * 60 / max(settled - available, 1e-9), 1),
            "by_code": dict(sorted(codes.items())),
            "by_request": {
                k: dict(v) for k, v in sorted(by_request.items(), key=lambda kv: -sum(kv[1].values()))
            },
        },
        "operator": {
            "peak_rss_mib": round(run.memory["VmHWM"] / 1024, 1),
            "rss_at_end_mib": round(run.memory["VmRSS"] / 1024, 1),
            "rss_idle_before_create_mib": round(run.idle_memory["VmRSS"] / 1024, 1),
            "rss_max_sampled_mib": round(max((kib for _, kib in run.rss_samples), default=0) / 1024, 1),
            "child_processes": len(run.children),
            "cpu_bring_up_s": round(operator_cpu[1] - operator_cpu[0], 1),
            "cpu_settle_s": round(operator_cpu[2] - operator_cpu[1], 1),
            "cpu_total_s": round(operator_cpu[2], 1),
            "reconciles": int(reconciles or 0),
            "reconcile_mean_s": round(reconcile_sum / reconciles, 3)
            if reconciles and reconcile_sum
            else None,
            # The counter has no series until the first error.
            "reconcile_errors": metric(
                run.metrics, "phalanx_operator_reconcile_errors_total", '{kind="ModelServing"}'
            )
            or 0,
            "log_warnings": len(warnings),
            "log_warning_examples": warnings[:5],
        },
        "writes_during_bring_up": writes_in_bring_up(audit, created, available),
        "machine_cpu_bring_up": {
            "busy_s": round(run.machine_busy_bring_up[0], 1),
            "capacity_s": round(run.machine_busy_bring_up[1], 1),
            "ours_s": round(sum(b - a for a, b, _ in run.cpu.values()), 1),
        },
        "cpu_during_bring_up_s": {
            name: round(at_available - at_create, 1)
            for name, (at_create, at_available, _) in sorted(run.cpu.items())
        },
    }


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> str:
    m, p, t = result["machine"], result["parameters"], result["timeline_s"]
    api, op = result["api_requests"], result["operator"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, commit {m['commit']} (src diff {m['src_diff_sha256']}), {m['date']}",
        f"load average (1/5/15 min): start {result['load_average_start']}, end {result['load_average_end']}; "
        f"machine CPU busy {result['machine_cpu']['busy_fraction']:.0%} over the run",
        f"workload: {p['replicas']} ServingGroups x {p['pods_per_group']} pods x {p['gpus_per_pod']} GPUs "
        f"on {p['nodes']} fake 8-GPU nodes; operator --workers {p['operator_workers']}",
        "",
        "| from creating the ModelServing | first (s) | last (s) | count |",
        "| --- | ---: | ---: | ---: |",
    ]
    for stage in ("created", "bound", "running", "ready"):
        row = t[stage]
        lines.append(f"| pods {stage} | {row['first_s']} | {row['last_s']} | {row['count']} |")
    lines += [
        f"| status availableReplicas >= 1 / == {p['replicas']} "
        f"| {t['available_1_s']} | {t['available_all_s']} | |",
        "",
        f"per pod, created -> bound (s): {result['pod_created_to_bound_s']}; "
        f"bound -> Ready: {result['pod_bound_to_ready_s']}",
        f"per group, last pod Ready -> status says Ready (s): {result['group_pods_ready_to_status_ready_s']}",
        f"pods on {result['nodes_used']} nodes, pods per node: {result['pods_per_node']}; "
        f"pods deleted: {result['pods_deleted']}, pods that lost Ready: {result['pods_that_lost_ready']}",
        "",
        f"operator API requests (audit log): {api['total']} in all, by phase {api['by_phase']}; "
        f"{api['bring_up_per_group']} per group during bring-up; "
        f"{api['settle_per_minute']}/min while settled; "
        f"response codes {api['by_code']}",
        "",
        "| request | startup | bring-up | settle | shutdown |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for request, counts in api["by_request"].items():
        cells = " | ".join(str(counts.get(ph, "")) for ph in ("startup", "bring-up", "settle", "shutdown"))
        lines.append(f"| {request} | {cells} |")
    lines += [
        "",
        f"operator: peak RSS (VmHWM) {op['peak_rss_mib']} MiB "
        f"(idle before create {op['rss_idle_before_create_mib']} MiB, at end {op['rss_at_end_mib']} MiB), "
        f"child processes {op['child_processes']}; CPU "
        f"{op['cpu_bring_up_s']} s during bring-up, {op['cpu_settle_s']} s while settled, "
        f"{op['cpu_total_s']} s in all; {op['reconciles']} ModelServing reconciles, mean "
        f"{op['reconcile_mean_s']} s, errors {op['reconcile_errors']}; "
        f"{op['log_warnings']} WARNING/ERROR log lines",
        f"operator creates during bring-up: {result['writes_during_bring_up']}",
        f"machine CPU during bring-up (s): {result['machine_cpu_bring_up']} (ours: the control plane and "
        "the operator; the rest is this script and whatever else ran)",
        f"CPU seconds during bring-up per process: {result['cpu_during_bring_up_s']}; "
        f"this script {result['machine_cpu']['bench_script_cpu_s']} s over the whole run",
    ]
    lines += [f"  log: {line}" for line in op["log_warning_examples"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=100, help="ServingGroups (default 100)")
    parser.add_argument("--workers-per-group", type=int, default=3, help="worker pods per group (default 3)")
    parser.add_argument("--gpus-per-pod", type=int, default=2, help="GPUs each pod asks for (default 2)")
    parser.add_argument("--nodes", type=int, default=100, help="fake nodes of 8 GPUs (default 100)")
    parser.add_argument(
        "--operator-workers", type=int, default=2, help="the operator's --workers (default 2)"
    )
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to keep running after Available")
    parser.add_argument("--timeout", type=float, default=900.0, help="limit on each wait, in seconds")
    parser.add_argument(
        "--out", type=Path, help="where to keep logs and the result (default: a new temp dir)"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="phalanx-bench-operator-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, out)
    except BaseException:
        say(f"failed; the operator log and audit log are in {out}")
        raise
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"\nresult, operator log and audit log: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
