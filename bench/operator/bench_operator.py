"""Measures `phalanx operator` bringing up many ServingGroups on a real control plane with fake nodes,
beside LeaderWorkerSet's controller doing the same.

    .venv/bin/python bench/operator/bench_operator.py                 # ours: 100 groups x 4 pods, 100 nodes
    bench/operator/build_lws.sh                                       # once: LeaderWorkerSet from source
    flock /tmp/phalanx-bigrun.lock .venv/bin/python bench/operator/bench_operator.py \\
        --groups 1000 --nodes 1000 --contenders ours-one,ours-many,lws

A contender is a controller and a shape: `ours-one` is one ModelServing of `--groups` ServingGroups,
`ours-many` is `--groups` ModelServings of one group each, `lws` is `--groups` LeaderWorkerSets of
size 4 (one group each) and `lws-one` one LeaderWorkerSet of `--groups` groups. Every group is an entry
(leader) pod and `--workers-per-group` worker pods of 100m CPU, 256Mi and `--gpus-per-pod` GPUs, gang
scheduled by Volcano (a PodGroup each).

Each contender gets a fresh, identical control plane (`tests/cluster/controlplane.py`: etcd,
kube-apiserver with an audit log, controller-manager, kube-scheduler, KWOK, Volcano's vc-scheduler) with
`--nodes` KWOK nodes of 8 GPUs, started one after another by the same run: both cannot share the nodes'
GPUs at once, and a fresh plane leaves no garbage collection of the previous contender's 4000 pods
running under the next one. The controller runs under a ServiceAccount of its own; the bench creates
the objects and waits until every one reports every group available, lets it run `--settle` seconds
more and stops everything.

It reports, per contender:
- times from creating the objects: first and last pod created, bound, Running, Ready (seen by a watch of
  this script), groups available reaching 1 and all; per group, its last pod Ready to its status Ready;
- the API requests the controller made, from the audit log (only the contender's users are audited; for
  LeaderWorkerSet also kube-controller-manager's StatefulSet controller, which creates its pods), by
  verb and resource, per phase (start-up, bring-up, settle);
- the controller's peak RSS (VmHWM) and CPU time, the CPU time of every control-plane component during
  the bring-up, the machine's load average, and how stale the node Leases got.

Progress goes to stderr, the summary to stdout; everything (summary JSON, logs, audit logs) stays in
the `--out` directory.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the control plane lives in tests/
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from contenders import AUDITED, collection, controller, manifests, metric  # noqa: E402
from lightkube.resources.core_v1 import Node  # noqa: E402
from machine import (  # noqa: E402
    Sampler,
    cpu_busy_seconds,
    group_members,
    load_average,
    machine_info,
    process_cpu,
    process_memory,
    src_diff,
)
from observe import LeaseLag, Observations, Shape, Watch  # noqa: E402
from tests.cluster.controlplane import (  # noqa: E402
    PHALANX_CRDS,
    ControlPlane,
    install_crds,
    running_control_plane,
    wait_for,
)

POOL_LABEL = "phalanx.dev/pool"
POOL = "bench"
SHAPES = ("ours-one", "ours-many", "lws", "lws-one")
# KWOK renews the fake nodes' Leases, but on a saturated 2-core machine a renewal can come more than the
# fixture's 40 s late; the node-lifecycle controller then marks the node's pods Ready=False for good (no
# kubelet puts them back) and the contender never gets there. The bench measures controllers, not
# heartbeats: give the nodes 5 minutes. LeaseLag records how late the renewals really came.
CONTROLLER_MANAGER_ARGS = ("--node-monitor-grace-period=5m",)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def shape_of(name: str, groups: int) -> Shape:
    controller_name = "phalanx" if name.startswith("ours") else "lws"
    many = name in ("ours-many", "lws")
    return Shape(name, controller_name, groups if many else 1, 1 if many else groups)


# ---------------------------------------------------------------------------------------------------------
# The audit log: the contender's requests
# ---------------------------------------------------------------------------------------------------------


def audit_args(directory: Path, users: list[str]) -> tuple[str, ...]:
    """Audit only the contender's users, once per request (when its response is complete)."""
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived", "ResponseStarted"],
        "rules": [{"level": "Metadata", "users": users}, {"level": "None"}],
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


def read_audit(directory: Path, users: dict[str, str]) -> list[dict[str, Any]]:
    """Each audited request with who made it, by the role name `users` gives that username."""
    roles = {user: role for role, user in users.items()}
    events = []
    for path in sorted(directory.glob("audit*.log")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            role = roles.get(event["user"]["username"])
            if event.get("stage") != "ResponseComplete" or role is None:
                continue
            if event.get("userAgent", "").startswith("Python-urllib"):
                continue  # this script checking the controller's token (SelfSubjectReview)
            ref = event.get("objectRef") or {}
            resource = ref.get("resource") or event.get("requestURI", "?").split("?")[0]
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            events.append(
                {
                    "at": datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp(),
                    "done": datetime.fromisoformat(event["stageTimestamp"]).timestamp(),
                    "user": role,
                    "verb": event["verb"],
                    "resource": resource,
                    "code": (event.get("responseStatus") or {}).get("code", 0),
                }
            )
    return events


def writes_in_bring_up(audit: list[dict[str, Any]], created: float, available: float) -> dict[str, Any]:
    """How the controller issued the creates that build the groups: one after another or several at
    once, and how their time splits into the API server answering and the controller between two."""
    creates = sorted(
        (
            e
            for e in audit
            if e["user"] == "controller" and e["verb"] == "create" and created <= e["at"] < available
        ),
        key=lambda e: e["at"],
    )
    if not creates:
        return {}
    pairs = list(itertools.pairwise(creates))
    status = [
        e["at"]
        for e in audit
        if e["user"] == "controller" and e["resource"].endswith("/status") and e["at"] >= created
    ]
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


def add_nodes(cp: ControlPlane, count: int, *, timeout: float) -> None:
    """Fake 8-GPU nodes; KWOK keeps their status and node Leases (see LeaseLag)."""
    say(f"registering {count} fake 8-GPU nodes")
    names = [f"bench-n{index:04d}" for index in range(count)]

    def add(name: str) -> None:
        cp.add_gpu_node(name, gpus=8, cpu="64", memory="512Gi", pods=110,
                        labels={POOL_LABEL: POOL}, wait_ready=False)  # fmt: skip

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, names))
    say(f"registered {count} nodes in {time.monotonic() - started:.0f}s; waiting for them to be Ready")

    def all_ready() -> bool:
        ready = 0
        for node in cp.client().list(Node, labels={POOL_LABEL: POOL}):
            conditions = (node.status.conditions if node.status else None) or []
            taints = (node.spec.taints if node.spec else None) or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions) and not taints:
                ready += 1
        return ready == count

    wait_for(f"{count} nodes Ready and untainted", all_ready, timeout=timeout, interval=3.0)
    say(f"{count} nodes Ready {time.monotonic() - started:.0f}s after the first was registered")


def create_objects(cp: ControlPlane, path: str, docs: list[dict[str, Any]]) -> None:
    """Create the contender's objects, 8 at a time (admin credentials, not audited)."""

    def create(doc: dict[str, Any]) -> None:
        code, body = cp.http("POST", path, body=doc)
        if code != 201:
            raise RuntimeError(f"creating {doc['metadata']['name']} answered {code}: {body}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, docs))


def wait_event(event: threading.Event, what: str, timeout: float, progress: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not event.wait(10.0):
        say(f"  ... {progress()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {progress()}")


@contextlib.contextmanager
def watching(cp: ControlPlane, shape: Shape, namespace: str, seen: Observations) -> Iterator[list[Watch]]:
    watches = [
        Watch(cp, f"/api/v1/namespaces/{namespace}/pods", seen.on_pod),
        Watch(cp, collection(shape, namespace), seen.on_object),
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
    created: float  # wall-clock times: the first object created, all groups available, settle over
    all_created: float  # the bench's last create answered
    available: float
    settled: float
    cpu: dict[str, tuple[float, float, float]]  # process -> CPU seconds at created, available, settled
    metrics: str  # the operator's /metrics at the end ("" for LeaderWorkerSet)
    memory: dict[str, int]  # the controller's VmRSS and VmHWM (KiB) at the end
    idle_memory: dict[str, int]  # the same just before the objects were created
    children: list[int]  # other processes of the controller's process group
    log_text: str
    warning_marks: tuple[str, ...]
    lease_lag: dict[str, Any]
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    machine_busy_bring_up: tuple[float, ...] = (0.0, 1.0)  # machine (busy, total) CPU seconds


def run_contender(shape: Shape, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One contender on a fresh control plane: nodes, controller, objects, wait, settle, summary."""
    users = AUDITED[shape.controller]
    audit_dir = out / "audit"
    result: dict[str, Any] = {"load_average_start": load_average()}
    busy_start, total_start = cpu_busy_seconds()
    with running_control_plane(
        apiserver_args=audit_args(audit_dir, list(users.values())),
        controller_manager_args=CONTROLLER_MANAGER_ARGS,
    ) as cp:
        say(f"{shape.name}: control plane up at {cp.server}")
        if shape.controller == "phalanx":
            install_crds(cp.client(), PHALANX_CRDS)
        add_nodes(cp, args.nodes, timeout=args.timeout)
        measured = bring_up(cp, shape, args, out)
        time.sleep(1.0)  # the audit log is written as responses complete; let the last ones land
        audit = read_audit(audit_dir, users)
    busy_end, total_end = cpu_busy_seconds()
    result["load_average_end"] = load_average()
    result.update(summarize(shape, args, measured, audit))
    result["machine_busy_fraction"] = round((busy_end - busy_start) / (total_end - total_start), 3)
    return result


def bring_up(cp: ControlPlane, shape: Shape, args: argparse.Namespace, out: Path) -> Measured:
    """Start the controller, create the objects, wait for every group, settle; measure on the way."""
    namespace = cp.new_namespace("bench")
    seen = Observations(shape)
    lease_lag = LeaseLag(cp)
    lease_lag.start()
    with (
        controller(cp, shape, out, args.operator_workers) as running,
        watching(cp, shape, namespace, seen),
    ):
        pid = running.pid
        wait_for(f"the {shape.controller} controller to lead", running.leading, timeout=90)
        sampler = Sampler(pid)
        sampler.start()
        idle = process_memory(pid)
        pids = {name: comp.proc.pid for name, comp in cp.components.items()} | {"controller": pid}
        at_create = {name: process_cpu(p) for name, p in pids.items()}
        busy_create = cpu_busy_seconds()
        docs = manifests(shape, namespace, args.workers_per_group, args.gpus_per_pod)
        say(f"{shape.name}: controller leading (pid {pid}, RSS {idle['VmRSS'] / 1024:.0f} MiB); "
            f"creating {len(docs)} objects of {shape.replicas} groups")  # fmt: skip

        # A server-side dry run of the first object goes through the same admission (LWS's webhooks,
        # a new CRD's storage) so that one-off start-up costs fall outside the timing.
        code, body = cp.http("POST", collection(shape, namespace) + "?dryRun=All", body=docs[0])
        if code != 201:
            raise RuntimeError(f"a dry-run create of {docs[0]['metadata']['name']} answered {code}: {body}")
        created = time.time()
        create_objects(cp, collection(shape, namespace), docs)
        all_created = time.time()
        wait_event(
            seen.all_available,
            f"{shape.groups} groups available",
            args.timeout,
            lambda: f"{seen.progress()}; {lease_lag.latest()}",
        )
        available = max(seen.done.values())
        at_available = {name: process_cpu(p) for name, p in pids.items()}
        busy_available = cpu_busy_seconds()
        say(f"{shape.name}: all {shape.groups} groups available after {available - created:.1f}s")
        say(f"settling for {args.settle:.0f}s")
        time.sleep(args.settle)
        settled = time.time()
        at_end = {name: process_cpu(p) for name, p in pids.items()}
        metrics = running.metrics()
        members = group_members(pid)
        memory = process_memory(pid)
        sampler.stop.set()
    lease_lag.stop.set()
    return Measured(
        seen=seen,
        created=created,
        all_created=all_created,
        available=available,
        settled=settled,
        cpu={name: (at_create[name], at_available[name], at_end[name]) for name in pids},
        metrics=metrics,
        memory=memory,
        idle_memory=idle,
        children=[m for m in members if m != pid],
        log_text=running.log.read_text(errors="replace"),
        warning_marks=running.warning_marks,
        lease_lag=lease_lag.summary(),
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
    shape: Shape, args: argparse.Namespace, run: Measured, audit: list[dict[str, Any]]
) -> dict[str, Any]:
    seen, created, available, settled = run.seen, run.created, run.available, run.settled
    pods = list(seen.pods.values())

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
    timeline["objects_created_s"] = round(run.all_created - created, 2)
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
    for key, members in groups.items():
        ready = seen.group_ready_at.get(key)
        if ready is not None and all("ready" in p for p in members):
            reporting.append(ready - max(p["ready"] for p in members))
    nodes = Counter(p.get("node") for p in pods if p.get("node"))

    phases = {"startup": (0.0, created), "bring-up": (created, available), "settle": (available, settled)}

    def phase_of(at: float) -> str:
        return next((name for name, (lo, hi) in phases.items() if lo <= at < hi), "shutdown")

    requests: dict[str, Any] = {}
    for role in AUDITED[shape.controller]:
        mine = [e for e in audit if e["user"] == role]
        by_request: dict[str, Counter[str]] = {}
        for event in mine:
            by_request.setdefault(f"{event['verb']} {event['resource']}", Counter())[
                phase_of(event["at"])
            ] += 1
        per_phase = Counter(phase_of(e["at"]) for e in mine)
        requests[role] = {
            "total": len(mine),
            "by_phase": dict(per_phase),
            "bring_up_per_group": round(per_phase["bring-up"] / shape.groups, 2),
            "settle_per_minute": round(per_phase["settle"] * 60 / max(settled - available, 1e-9), 1),
            "by_code": dict(sorted(Counter(str(e["code"]) for e in mine).items())),
            "by_request": {
                k: dict(v) for k, v in sorted(by_request.items(), key=lambda kv: -sum(kv[1].values()))
            },
        }

    reconciles = metric(
        run.metrics, "phalanx_operator_reconcile_duration_seconds_count", '{kind="ModelServing"}'
    )
    reconcile_sum = metric(
        run.metrics, "phalanx_operator_reconcile_duration_seconds_sum", '{kind="ModelServing"}'
    )
    cpu = run.cpu["controller"]
    warnings = [line for line in run.log_text.splitlines() if any(m in line for m in run.warning_marks)]
    return {
        "shape": {
            "contender": shape.name,
            "controller": shape.controller,
            "objects": shape.objects,
            "groups_per_object": shape.replicas,
            "groups": shape.groups,
            "pods_per_group": 1 + args.workers_per_group,
            "gpus_per_pod": args.gpus_per_pod,
            "nodes": args.nodes,
            "operator_workers": args.operator_workers if shape.controller == "phalanx" else None,
            "settle_s": args.settle,
        },
        "timeline_s": timeline,
        "pods_expected": shape.groups * (1 + args.workers_per_group),
        "pods_deleted": sum("deleted" in p for p in pods),
        "pods_that_lost_ready": sum("lost_ready" in p for p in pods),
        "nodes_used": len(nodes),
        "pods_per_node": dict(sorted(Counter(nodes.values()).items())),
        "pod_created_to_bound_s": spread(scheduling),
        "pod_bound_to_ready_s": spread(starting),
        "group_pods_ready_to_status_ready_s": spread(reporting),
        "node_lease_lag": run.lease_lag,
        "api_requests": requests,
        "controller": {
            "peak_rss_mib": round(run.memory["VmHWM"] / 1024, 1),
            "rss_at_end_mib": round(run.memory["VmRSS"] / 1024, 1),
            "rss_idle_before_create_mib": round(run.idle_memory["VmRSS"] / 1024, 1),
            "rss_max_sampled_mib": round(max((kib for _, kib in run.rss_samples), default=0) / 1024, 1),
            "child_processes": len(run.children),
            "cpu_bring_up_s": round(cpu[1] - cpu[0], 1),
            "cpu_settle_s": round(cpu[2] - cpu[1], 1),
            "cpu_total_s": round(cpu[2], 1),
            "reconciles": int(reconciles or 0) if reconciles is not None else None,
            "reconcile_mean_s": round(reconcile_sum / reconciles, 3)
            if reconciles and reconcile_sum
            else None,
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


def report_one(result: dict[str, Any]) -> list[str]:
    s, t, c = result["shape"], result["timeline_s"], result["controller"]
    lines = [
        f"## {s['contender']}: {s['objects']} object(s) x {s['groups_per_object']} group(s) x "
        f"{s['pods_per_group']} pods x {s['gpus_per_pod']} GPUs on {s['nodes']} nodes",
        f"load average (1/5/15 min): start {result['load_average_start']}, end {result['load_average_end']}; "
        f"machine CPU busy {result['machine_busy_fraction']:.0%} over the contender's run",
        "",
        "| from creating the objects | first (s) | last (s) | count |",
        "| --- | ---: | ---: | ---: |",
    ]
    for stage in ("created", "bound", "running", "ready"):
        row = t[stage]
        lines.append(f"| pods {stage} | {row['first_s']} | {row['last_s']} | {row['count']} |")
    lines += [
        f"| groups available >= 1 / all {s['groups']} | {t['available_1_s']} | {t['available_all_s']} | |",
        "",
        f"objects created by the bench in {t['objects_created_s']} s; "
        f"per pod, created -> bound (s): {result['pod_created_to_bound_s']}; "
        f"bound -> Ready: {result['pod_bound_to_ready_s']}",
        f"per group, last pod Ready -> status says Ready (s): {result['group_pods_ready_to_status_ready_s']}",
        f"pods on {result['nodes_used']} nodes, pods per node: {result['pods_per_node']}; "
        f"pods deleted: {result['pods_deleted']}, pods that lost Ready: {result['pods_that_lost_ready']}; "
        f"node Leases: {result['node_lease_lag']}",
    ]
    for role, api in result["api_requests"].items():
        lines += [
            "",
            f"{role} API requests (audit log): {api['total']} in all, by phase {api['by_phase']}; "
            f"{api['bring_up_per_group']} per group during bring-up; {api['settle_per_minute']}/min settled; "
            f"response codes {api['by_code']}",
            "",
            "| request | startup | bring-up | settle | shutdown |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for request, counts in api["by_request"].items():
            cells = " | ".join(
                str(counts.get(ph, "")) for ph in ("startup", "bring-up", "settle", "shutdown")
            )
            lines.append(f"| {request} | {cells} |")
    lines += [
        "",
        f"controller: peak RSS (VmHWM) {c['peak_rss_mib']} MiB (idle before create "
        f"{c['rss_idle_before_create_mib']} MiB, at end {c['rss_at_end_mib']} MiB), child processes "
        f"{c['child_processes']}; CPU {c['cpu_bring_up_s']} s during bring-up, {c['cpu_settle_s']} s "
        f"settled, {c['cpu_total_s']} s in all; reconciles {c['reconciles']} "
        f"(mean {c['reconcile_mean_s']} s); "
        f"{c['log_warnings']} warning/error log lines",
        f"controller creates during bring-up: {result['writes_during_bring_up']}",
        f"machine CPU during bring-up (s): {result['machine_cpu_bring_up']}",
        f"CPU seconds during bring-up per process: {result['cpu_during_bring_up_s']}",
    ]
    lines += [f"  log: {line[:300]}" for line in c["log_warning_examples"]]
    return lines


def side_by_side(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| contender | objects x groups | all Available (s) | controller requests / group | "
        "StatefulSet controller requests / group | sum / group | controller CPU in bring-up (s) | "
        "peak RSS (MiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s, api = r["shape"], r["api_requests"]
        own = api["controller"]["bring_up_per_group"]
        sts = api.get("statefulset-controller", {}).get("bring_up_per_group")
        lines.append(
            f"| {s['contender']} | {s['objects']} x {s['groups_per_object']} | "
            f"{r['timeline_s']['available_all_s']} | {own} | {'' if sts is None else sts} | "
            f"{round(own + (sts or 0), 2)} | {r['controller']['cpu_bring_up_s']} | "
            f"{r['controller']['peak_rss_mib']} |"
        )
    return lines


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, commit {m['commit']} (src diff {m['src_diff_sha256']}), {m['date']}",
        "",
        *side_by_side(result["contenders"]),
    ]
    for one in result["contenders"]:
        lines += ["", *report_one(one)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--groups", "--replicas", type=int, default=100, help="ServingGroups / LWS groups (default 100)"
    )
    parser.add_argument(
        "--contenders",
        default="ours-one",
        help=f"comma-separated, run in this order, from {', '.join(SHAPES)} (default ours-one)",
    )
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
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        parser.error(f"--contenders: unknown {unknown or names}; choose from {', '.join(SHAPES)}")
    if args.groups * (1 + args.workers_per_group) * args.gpus_per_pod > args.nodes * 8:
        parser.error("the workload does not fit: groups x pods x GPUs per pod > nodes x 8")
    out = args.out or Path(tempfile.mkdtemp(prefix="phalanx-bench-operator-"))
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine_info(), "contenders": []}
    (out / "src.diff").write_bytes(src_diff())  # the uncommitted code that was measured, if any
    times_start = os.times()
    for name in names:
        (out / name).mkdir(exist_ok=True)
        try:
            result["contenders"].append(run_contender(shape_of(name, args.groups), args, out / name))
        except BaseException:
            say(f"{name} failed; its logs and audit log are in {out / name}")
            raise
        (out / "result.json").write_text(json.dumps(result, indent=2))
    times_end = os.times()
    result["bench_script_cpu_s"] = round(
        (times_end.user + times_end.system) - (times_start.user + times_start.system), 1
    )
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"\nresult, controller logs and audit logs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
