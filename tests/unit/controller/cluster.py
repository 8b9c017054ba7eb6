"""A tiny in-memory cluster for driving the pure controller core step by step in unit tests.

It stores Kubernetes-shaped objects, applies a Decision's actions the way a runtime would (pods
terminate before they disappear), and lets a test flip pods ready, fail them and move the clock.
Pods are read back through `observed.observe`, the same path the real runtimes use.
"""

from __future__ import annotations

import copy
from typing import Any

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing
from phalanx.controller.actions import Annotate, Apply, Create, Decision, Delete
from phalanx.controller.observed import GANG_OBJECT_KINDS, Observed, format_time, observe
from phalanx.controller.reconcile import reconcile
from phalanx.controller.recovery import Settings
from phalanx.controller.revision import serving_from_revision

Object = dict[str, Any]


class FakeCluster:
    def __init__(self, ms: ModelServing, settings: Settings | None = None, now: float = 1_000_000.0) -> None:
        self.ms = ms
        self.settings = settings or Settings()
        self.now = now
        self.objects: dict[tuple[str, str], Object] = {}
        self.in_flight: dict[str, int] = {}
        self.served_gangs: frozenset[str] = GANG_OBJECT_KINDS  # what the "cluster" has CRDs for
        self.decisions: list[Decision] = []

    # ---- reading ----
    def of_kind(self, kind: str) -> list[Object]:
        return [o for (k, _), o in sorted(self.objects.items()) if k == kind]

    def pods(self, *, include_deleting: bool = True) -> list[Object]:
        return [
            p for p in self.of_kind("Pod") if include_deleting or not p["metadata"].get("deletionTimestamp")
        ]

    def pod_names(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.pods(include_deleting=False))

    def groups(self) -> list[int]:
        return sorted(
            {int(p["metadata"]["labels"][L.GROUP_INDEX]) for p in self.pods(include_deleting=False)}
        )

    def group_revisions(self) -> dict[int, str]:
        return {
            int(p["metadata"]["labels"][L.GROUP_INDEX]): p["metadata"]["labels"][L.REVISION]
            for p in self.pods(include_deleting=False)
        }

    def observed(self) -> Observed:
        revisions = dict(
            r for r in (serving_from_revision(o) for o in self.of_kind("ControllerRevision")) if r is not None
        )
        return observe(
            self.pods(),
            self.of_kind("Service"),
            self.of_kind("PodGroup"),
            revisions,
            self.in_flight,
            served_gangs=self.served_gangs,
        )

    # ---- acting ----
    def step(self) -> Decision:
        decision = reconcile(self.ms, self.observed(), self.now, self.settings)
        self.apply(decision)
        self.ms = self.ms.model_copy(update={"status": decision.status})
        self.decisions.append(decision)
        return decision

    def apply(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, Create):
                key = (action.kind, action.name)
                if key in self.objects:
                    continue
                obj = copy.deepcopy(action.object)
                obj["metadata"]["creationTimestamp"] = format_time(self.now)
                if action.kind == "Pod":
                    obj["status"] = {"phase": "Pending", "conditions": []}
                self.objects[key] = obj
            elif isinstance(action, Delete):
                key = (action.kind, action.name)
                if key not in self.objects:
                    continue
                if action.kind == "Pod":
                    self.objects[key]["metadata"]["deletionTimestamp"] = format_time(self.now)
                else:
                    del self.objects[key]
            elif isinstance(action, Apply):
                key = (action.kind, action.name)
                existing = self.objects.get(key, {})
                obj = copy.deepcopy(action.object)
                obj["metadata"]["creationTimestamp"] = existing.get("metadata", {}).get(
                    "creationTimestamp", format_time(self.now)
                )
                if "status" in existing:
                    obj["status"] = existing["status"]
                self.objects[key] = obj
            elif isinstance(action, Annotate):
                obj = self.objects.get((action.kind, action.name))
                if obj is None:
                    continue
                annotations = obj["metadata"].setdefault("annotations", {})
                for name, value in action.annotations.items():
                    if value is None:
                        annotations.pop(name, None)
                    else:
                        annotations[name] = value

    def set_spec(self, ms: ModelServing) -> None:
        generation = (self.ms.metadata.generation or 1) + 1
        metadata = ms.metadata.model_copy(update={"generation": generation})
        self.ms = ms.model_copy(update={"status": self.ms.status, "metadata": metadata})

    def tick(self, seconds: float) -> None:
        self.now += seconds

    def _set_ready(self, pod: Object, ready: bool) -> None:
        status = pod["status"]
        status["phase"] = "Running"
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        conditions["PodScheduled"] = {"type": "PodScheduled", "status": "True"}
        old = conditions.get("Ready")
        value = "True" if ready else "False"
        if old is None or old["status"] != value:
            conditions["Ready"] = {
                "type": "Ready",
                "status": value,
                "lastTransitionTime": format_time(self.now),
            }
        status["conditions"] = list(conditions.values())

    def make_ready(self, *names: str) -> None:
        """Marks the named pods (all live pods when none are named) running and ready."""
        for pod in self.pods(include_deleting=False):
            if not names or pod["metadata"]["name"] in names:
                self._set_ready(pod, True)

    def crash(self, name: str) -> None:
        """The pod's container exited and was restarted in place: not ready, restartCount + 1."""
        pod = self.objects[("Pod", name)]
        self._set_ready(pod, False)
        statuses = pod["status"].setdefault("containerStatuses", [{"name": "engine", "restartCount": 0}])
        statuses[0]["restartCount"] += 1
        statuses[0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
        statuses[0]["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": format_time(self.now)}}

    def remove_pod(self, name: str) -> None:
        """Someone deleted the pod outright (node lost, kubectl delete --force)."""
        del self.objects[("Pod", name)]

    def finish_terminations(self) -> None:
        for key, obj in list(self.objects.items()):
            if key[0] == "Pod" and obj["metadata"].get("deletionTimestamp"):
                del self.objects[key]

    def settle(self, steps: int = 60, tick: float = 1.0) -> None:
        """Run the loop as a healthy cluster would: new pods become ready, deletions finish."""
        quiet = 0
        for _ in range(steps):
            decision = self.step()
            self.finish_terminations()
            self.make_ready()
            # Quiet twice in a row, with no short timer pending (drains, grace periods, backoff).
            waiting = decision.requeue_after is not None and decision.requeue_after < 60
            quiet = quiet + 1 if not decision.actions and not waiting else 0
            if quiet >= 2:
                return
            self.tick(tick)
        raise AssertionError("did not settle")
