"""What bench_operator watches: pods, the contender's objects and the node Leases, as the API server
reports them to this script's admin credentials (which the audit log does not record)."""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.cluster.controlplane import ControlPlane

PHALANX_NAME, PHALANX_GROUP = "serving.phalanx.dev/name", "serving.phalanx.dev/group-index"
LWS_NAME, LWS_GROUP = "leaderworkerset.sigs.k8s.io/name", "leaderworkerset.sigs.k8s.io/group-index"


@dataclass(frozen=True)
class Shape:
    """One contender: which controller, and its groups as `objects` objects of `replicas` groups each."""

    name: str
    controller: str  # "phalanx" or "lws"
    objects: int
    replicas: int

    @property
    def groups(self) -> int:
        return self.objects * self.replicas

    def object_names(self, prefix: str) -> list[str]:
        if self.objects == 1:
            return [prefix]
        return [f"{prefix}-{index:04d}" for index in range(self.objects)]

    def group_of(self, labels: dict[str, str]) -> str:
        """The group a pod belongs to, as `<object>/<group index>`."""
        name, index = (PHALANX_NAME, PHALANX_GROUP) if self.controller == "phalanx" else (LWS_NAME, LWS_GROUP)
        return f"{labels.get(name)}/{labels.get(index)}"


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


def condition(status: dict[str, Any], kind: str) -> str | None:
    return next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == kind), None)


class Observations:
    """When each pod was first seen created, bound, Running and Ready; how the objects' status moved."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.lock = threading.Lock()
        self.pods: dict[str, dict[str, Any]] = {}
        self.groups_available: dict[str, int] = {}  # object -> groups its status counts available
        self.available_at: dict[int, float] = {}  # groups available in all -> first time seen
        self.group_ready_at: dict[str, float] = {}  # "<object>/<index>" -> first time its status said Ready
        self.done: dict[str, float] = {}  # object -> first time it was Available with every group
        self.all_available = threading.Event()

    def on_pod(self, kind: str, pod: dict[str, Any], now: float) -> None:
        metadata, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
        with self.lock:
            seen = self.pods.setdefault(metadata.get("name", "?"), {"created": now})
            seen["group"] = self.shape.group_of(metadata.get("labels") or {})
            if spec.get("nodeName"):
                seen.setdefault("bound", now)
                seen["node"] = spec["nodeName"]
            if status.get("phase") == "Running":
                seen.setdefault("running", now)
            if condition(status, "Ready") == "True":
                seen.setdefault("ready", now)
            elif "ready" in seen:  # Ready, then not: nothing in this run should do that
                seen["lost_ready"] = seen.get("lost_ready", 0) + 1
            if kind == "DELETED":
                seen["deleted"] = now

    def on_object(self, kind: str, obj: dict[str, Any], now: float) -> None:
        """A ModelServing (availableReplicas, status.groups) or a LeaderWorkerSet (readyReplicas)."""
        name = (obj.get("metadata") or {}).get("name", "?")
        wanted = int((obj.get("spec") or {}).get("replicas") or 0)
        status = obj.get("status") or {}
        counted = "availableReplicas" if self.shape.controller == "phalanx" else "readyReplicas"
        available = int(status.get(counted) or 0)
        done = available >= wanted and condition(status, "Available") == "True"
        with self.lock:
            self.groups_available[name] = available
            self.available_at.setdefault(sum(self.groups_available.values()), now)
            for group in status.get("groups") or []:
                if group.get("phase") == "Ready":
                    self.group_ready_at.setdefault(f"{name}/{group['name'].rsplit('-', 1)[-1]}", now)
            if done:
                self.done.setdefault(name, now)
                if wanted == 1:  # a LeaderWorkerSet says nothing per group; of one group, this is it
                    self.group_ready_at.setdefault(f"{name}/0", now)
            finished = len(self.done) >= self.shape.objects
        if finished:
            self.all_available.set()

    def progress(self) -> str:
        with self.lock:
            pods = list(self.pods.values())
            return (
                f"pods created {len(pods)}, bound {sum('bound' in p for p in pods)}, "
                f"Running {sum('running' in p for p in pods)}, Ready {sum('ready' in p for p in pods)} "
                f"(of which lost Ready since {sum('lost_ready' in p for p in pods)}); "
                f"groups available {sum(self.groups_available.values())}, "
                f"objects done {len(self.done)}/{self.shape.objects}"
            )


class LeaseLag(threading.Thread):
    """Every 15 s, how long ago the stalest node Lease was renewed (KWOK renews them, as kubelets do;
    the node-lifecycle controller marks a node and its pods not ready 40 s after its last renewal)."""

    def __init__(self, cp: ControlPlane) -> None:
        super().__init__(name="node lease lag", daemon=True)
        self.cp = cp
        self.stop = threading.Event()
        self.samples: list[tuple[float, float, int]] = []  # (time, worst lag s, leases older than 30 s)

    def sample(self) -> None:
        code, body = self.cp.http("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
        if code != 200:
            return
        now = time.time()
        lags = [
            now - datetime.fromisoformat(item["spec"]["renewTime"]).timestamp()
            for item in body.get("items") or []
            if (item.get("spec") or {}).get("renewTime")
        ]
        if lags:
            self.samples.append((now, max(lags), sum(lag > 30 for lag in lags)))

    def run(self) -> None:
        while not self.stop.wait(15.0):
            try:
                self.sample()
            except (OSError, ValueError):
                continue

    def latest(self) -> str:
        if not self.samples:
            return "node Leases: no sample yet"
        _, worst, stale = self.samples[-1]
        return f"stalest node Lease {worst:.0f}s old, {stale} older than 30s"

    def summary(self) -> dict[str, Any]:
        return {
            "samples": len(self.samples),
            "worst_lag_s": round(max((s[1] for s in self.samples), default=0.0), 1),
            "most_leases_older_than_30s": max((s[2] for s in self.samples), default=0),
        }
