"""`phalanx up` applies an AutoscalingPolicy from its spec file: real `up`, real simulator pods and
the real router on loopback, with short periods and windows so each test takes well under a minute."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from phalanx.autoscale.from_api import parse_time
from tests.component.embedded.harness import ROOT, Up, quickstart, running_up
from tests.component.router.held import ChatInBackground

pytestmark = pytest.mark.component

MODEL = "tiny-test"  # what the quickstart's engines serve


def serving(replicas: int, *, inter_token_latency: float | None = None) -> dict[str, Any]:
    """The quickstart at `replicas` groups with test-speed probes; a slow decode makes requests last."""
    data = quickstart(**{"spec.replicas": replicas})
    template = data["spec"]["template"]
    template["restartGracePeriodSeconds"] = 0
    for role in template["roles"]:
        for key in ("entryTemplate", "workerTemplate"):
            container = role[key]["spec"]["containers"][0]
            if inter_token_latency is not None:
                container["args"] += [
                    "--inter-token-latency",
                    str(inter_token_latency),
                    "--itl-batch-factor",
                    "0",
                ]
        role["entryTemplate"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = 1
    return data


def policy(
    low: int, high: int, *, inflight: float = 2, observe_only: bool = False, down_window: str = "3s"
) -> dict[str, Any]:
    """A policy on the quickstart: one pass a second, no panic, steps of 2 groups per second."""
    step = {"instances": 2, "percent": 100, "period": "1s"}
    return {
        "apiVersion": "serving.phalanx.dev/v1alpha1",
        "kind": "AutoscalingPolicy",
        "metadata": {"name": "quickstart-load"},
        "spec": {
            "period": "1s",
            "observeOnly": observe_only,
            "metrics": [{"name": "inflight", "targetValue": inflight}],
            "behavior": {
                "scaleUp": {"stablePolicy": step, "panicPolicy": {"percent": 0}},
                "scaleDown": {**step, "stabilizationWindow": down_window},
            },
            "homogeneousTarget": {
                "minReplicas": low,
                "maxReplicas": high,
                "target": {"targetRef": {"name": "quickstart"}},
            },
        },
    }


def spec_file(tmp_path: Path, *documents: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def replicas(up: Up) -> int:
    return int(up.serving()["spec"]["replicas"])


def policy_status(up: Up) -> dict[str, Any]:
    (found,) = [p for p in up.status()["policies"] if p["metadata"]["name"] == "quickstart-load"]
    return found.get("status") or {}


class Load:
    """`clients` threads each sending chats one after another until stopped (`once`: one each);
    every failure kept."""

    def __init__(self, base_url: str, clients: int, max_tokens: int, *, once: bool = False) -> None:
        self.base_url, self.max_tokens, self.once = base_url, max_tokens, once
        self.stopped = threading.Event()
        self.answered = 0
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        client = openai.OpenAI(base_url=self.base_url, api_key="unused", max_retries=0, timeout=60)
        while not self.stopped.is_set():
            try:
                client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": f"hi {uuid.uuid4().hex}"}],
                    max_tokens=self.max_tokens,
                )
                with self._lock:
                    self.answered += 1
                if self.once:
                    return
            except BaseException as exc:  # every failure is a test failure, reported by `stop`
                with self._lock:
                    self.failures.append(exc)
                if self.once:
                    return

    def stop(self) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(90)
        assert not any(t.is_alive() for t in self._threads), "a request never finished"
        assert self.failures == [], f"{len(self.failures)} requests failed: {self.failures[:3]}"


def test_a_request_at_zero_groups_makes_the_autoscaler_start_one_and_is_answered(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, serving(0), policy(0, 2, down_window="600s"))
    with running_up(tmp_path, spec) as up:
        up.wait_for(lambda s: bool(s["policies"]) and bool(s["servings"]), "the policy applied")
        assert up.status()["pods"] == []
        time.sleep(2)  # passes with nothing held keep it at zero
        assert replicas(up) == 0
        chat = ChatInBackground(up.base_url, MODEL, timeout_s=60)
        assert chat.answer()
        assert replicas(up) == 1
        status = policy_status(up)["homogeneousStatus"]
        assert [(h["previous"], h["desired"]) for h in status["history"]][-1] == (0, 1)
        assert "admission queue" in status["history"][-1]["reason"]
        events = [e for e in up.status()["events"] if e.get("reason") == "Autoscaled"]
        assert events and "replicas 0 -> 1" in events[-1]["message"]


def test_a_request_held_at_zero_wakes_the_autoscaler_before_its_period(tmp_path: Path) -> None:
    # A 15 s period: without the router's wake the request would wait for the next pass, up to
    # 15 s, before the first group even starts.
    data = policy(0, 2, down_window="600s")
    data["spec"]["period"] = "15s"
    spec = spec_file(tmp_path, serving(0), data)
    with running_up(tmp_path, spec) as up:
        up.wait_for(
            lambda s: any((p.get("status") or {}).get("homogeneousStatus") for p in s["policies"]),
            "the first pass, at zero with nothing held",
        )
        time.sleep(1.5)  # a request that comes later than the woken passes' spacing (1 s)
        assert replicas(up) == 0
        sent = time.time()
        chat = ChatInBackground(up.base_url, MODEL, timeout_s=60)
        assert chat.answer()
        answered = time.time() - sent
        record = policy_status(up)["homogeneousStatus"]["history"][-1]
        assert (record["previous"], record["desired"]) == (0, 1)
        assert "admission queue" in record["reason"]
        decided = parse_time(record["time"]) - sent
        print(f"held at zero: decided after {decided:.2f} s, answered after {answered:.2f} s (period 15 s)")
        assert 0 <= decided < 2.0, decided
        assert answered < 10.0, answered


def test_load_scales_up_to_the_maximum_and_back_down_draining_in_flight_requests(tmp_path: Path) -> None:
    # 8 requests of 60 tokens at 0.05 s a token: 3 s each, 8 in flight against 2 per group.
    spec = spec_file(tmp_path, serving(1, inter_token_latency=0.05), policy(1, 3))
    with running_up(tmp_path, spec) as up:
        up.wait_available(groups=1)
        load = Load(up.base_url, clients=8, max_tokens=60)
        try:
            up.wait_for(
                lambda s: s["servings"][0]["spec"]["replicas"] == 3, "scale-up to the maximum", timeout=20
            )
            up.wait_available(groups=3, timeout=30)
        finally:
            load.stop()  # waits for every short request's answer
        assert load.answered > 0
        # Three long requests (10 s), sent once nothing else is in flight, so the router's least-load
        # choice puts one on each group (sent while short requests were still in flight, two could
        # share a group and the group that leaves could be an idle one). Alone they ask for 2
        # groups, and the group that leaves drains under one.
        tail = Load(up.base_url, clients=3, max_tokens=200, once=True)
        drained: list[str] = []

        def scaled_down(payload: dict[str, Any]) -> bool:
            busy = payload["router"]["inFlight"]
            drained.extend(
                p["name"]
                for p in payload["pods"]
                if p["draining"] and busy.get(f"default/{p['name']}", 0) > 0
            )
            return int(payload["servings"][0]["spec"]["replicas"]) < 3

        up.wait_for(scaled_down, "scale-down under load", timeout=20)
        assert tail.answered == 0, "the long requests ended before the scale-down: nothing was drained"
        up.wait_for(
            lambda s: scaled_down(s) and s["servings"][0]["spec"]["replicas"] == 1,
            "scale-down to the minimum",
            timeout=40,
        )
        assert drained, "no group was drained while a request was in flight on it"
        tail.stop()
        assert tail.answered == 3
        downs = [h for h in policy_status(up)["homogeneousStatus"]["history"] if h["desired"] < h["previous"]]
        assert downs, "no scale-down recorded"


def test_observe_only_reports_the_decision_and_changes_nothing(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, serving(1, inter_token_latency=0.05), policy(1, 3, observe_only=True))
    with running_up(tmp_path, spec) as up:
        up.wait_available(groups=1)
        load = Load(up.base_url, clients=8, max_tokens=60)
        try:
            found = up.wait_for(
                lambda s: (
                    ((s["policies"][0].get("status") or {}).get("homogeneousStatus") or {}).get(
                        "desiredReplicas", 0
                    )
                    > 1
                ),
                "an observed scale-up decision",
                timeout=20,
            )
        finally:
            load.stop()
        status = found["policies"][0]["status"]["homogeneousStatus"]
        assert "observe only: not applied" in status["reason"], status["reason"]
        assert replicas(up) == 1
        assert len({p["group"] for p in up.status()["pods"]}) == 1
        assert any(e.get("reason") == "AutoscaleObserved" for e in up.status()["events"])


def test_a_second_policy_applied_on_the_same_target_is_refused_and_shown(tmp_path: Path) -> None:
    second = policy(1, 3)
    second["metadata"]["name"] = "quickstart-second"
    with running_up(tmp_path, spec_file(tmp_path, serving(1), policy(1, 2))) as up:
        up.wait_for(lambda s: bool(s["policies"]), "the first policy applied")
        applied = up.phalanx("apply", "-f", str(up.write_spec(second, "second.yaml")))
        assert applied.returncode == 0, applied.stderr
        assert "autoscalingpolicy/quickstart-second created" in applied.stdout
        found = up.wait_for(
            lambda s: any(
                c["type"] == "ConflictingAutoscaler" and c["status"] == "True"
                for p in s["policies"]
                for c in (p.get("status") or {}).get("conditions", [])
            ),
            "the conflict shown",
        )
        refused = {p["metadata"]["name"]: p for p in found["policies"]}["quickstart-second"]
        (condition,) = [c for c in refused["status"]["conditions"] if c["type"] == "ConflictingAutoscaler"]
        assert "quickstart-load" in condition["message"]
        assert "homogeneousStatus" not in refused["status"]
        shown = up.phalanx("status")
        assert "already scaled by AutoscalingPolicy quickstart-load" in " ".join(shown.stdout.split())


@pytest.mark.parametrize("groups", [1, 2])
def test_a_policy_on_roles_scales_the_decode_role_under_load(tmp_path: Path, groups: int) -> None:
    """With two groups the decode role's unit is a slice: 1 -> 2 adds an instance to each group."""
    pd: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart-pd.yaml").read_text())
    pd["spec"]["replicas"] = groups
    pd["spec"]["template"]["restartGracePeriodSeconds"] = 0
    for role in pd["spec"]["template"]["roles"]:
        container = role["entryTemplate"]["spec"]["containers"][0]
        container["readinessProbe"]["periodSeconds"] = 1
        if role["name"] == "decode":
            role["replicas"] = 1
            container["args"] += ["--inter-token-latency", "0.05", "--itl-batch-factor", "0"]
    roles = policy(1, 1, down_window="60s")  # no scale-down while the instances are checked
    roles["metadata"]["name"] = "pd-load"
    del roles["spec"]["homogeneousTarget"]
    roles["spec"]["disaggregatedTarget"] = {
        "targetRef": {"name": "quickstart-pd"},
        "roles": {
            "prefill": {"minReplicas": 1, "maxReplicas": 1},
            "decode": {"minReplicas": 1, "maxReplicas": 2},
        },
    }
    with running_up(tmp_path, spec_file(tmp_path, pd, roles)) as up:
        up.wait_available("quickstart-pd")
        load = Load(up.base_url, clients=6, max_tokens=60)
        try:
            found = up.wait_for(
                lambda s: (
                    {r["name"]: r["replicas"] for r in s["servings"][0]["spec"]["template"]["roles"]}
                    == {"prefill": 1, "decode": 2}
                ),
                "decode scaled to 2",
                timeout=30,
            )
        finally:
            load.stop()
        (shown,) = found["policies"]
        decode = {r["name"]: r for r in shown["status"]["disaggregatedStatus"]["roles"]}["decode"]
        assert decode["desiredReplicas"] == 2
        events = [e["message"] for e in found["events"] if e.get("reason") == "Autoscaled"]
        assert any("role decode replicas 1 -> 2" in m for m in events), events
        ready = {c["type"]: c for c in shown["status"]["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "Decided")  # not refused

        def every_group_runs_two_decode_instances(payload: dict[str, Any]) -> bool:
            ready = {
                (p["group"], p["roleIndex"])
                for p in payload["pods"]
                if p["role"] == "decode" and p["ready"] and not p["draining"]
            }
            return ready == {(g, i) for g in range(groups) for i in range(2)}

        up.wait_for(every_group_runs_two_decode_instances, "two decode instances in each group", timeout=30)

        def second_slice_counted(payload: dict[str, Any]) -> bool:
            (policy,) = payload["policies"]
            roles = policy["status"]["disaggregatedStatus"]["roles"]
            return {r["name"]: r for r in roles}["decode"].get("readyReplicas") == 2

        # The core counts slices: two, not 2 x groups instances.
        up.wait_for(second_slice_counted, "the policy counting two ready decode slices", timeout=30)


def test_the_engine_s_batch_size_and_request_time_reach_the_capacity_floor(tmp_path: Path) -> None:
    # One client, 20 tokens at 0.02 s: a group runs 1 of its 4 slots and never queues, so nothing
    # is learned from saturation; the floor plans with 4 slots x tokens per request / the
    # simulator's request time, read from the pod's argv and its metrics page.
    data = serving(1, inter_token_latency=0.02)
    for role in data["spec"]["template"]["roles"]:
        for key in ("entryTemplate", "workerTemplate"):
            role[key]["spec"]["containers"][0]["args"] += ["--max-num-seqs", "4"]
    chosen = policy(1, 1, inflight=100)
    chosen["spec"]["capacityUtilizationPercent"] = 10  # the floor asks for more than the target
    spec = spec_file(tmp_path, data, chosen)
    with running_up(tmp_path, spec) as up:
        up.wait_available(groups=1)
        load = Load(up.base_url, clients=1, max_tokens=20)
        try:

            def estimated(payload: dict[str, Any]) -> bool:
                (found,) = [p for p in payload["policies"] if p["metadata"]["name"] == "quickstart-load"]
                conditions = (found.get("status") or {}).get("conditions") or []
                return any("batch-estimated" in (c.get("message") or "") for c in conditions)

            up.wait_for(estimated, "a decision on the batch estimate", timeout=60)
        finally:
            load.stop()
        (ready,) = [c for c in policy_status(up)["conditions"] if c["type"] == "Ready"]
        print(ready["message"])
        found = re.search(
            r"demand ([\d.,]+) tokens/s at 10% of the batch-estimated ([\d.,]+) tokens/s", ready["message"]
        )
        assert found is not None, ready["message"]
        # One client holds at most one of the 4 slots: the estimate is well above the demand.
        demand, estimate = (float(found[i].replace(",", "")) for i in (1, 2))
        assert 0 < 2 * demand < estimate, ready["message"]
        assert replicas(up) == 1  # the maximum holds


def test_prefill_and_decode_scaling_up_together_share_the_free_gpus(tmp_path: Path) -> None:
    """Decode asks for one more 1-GPU instance and the 1:1 band raises prefill with it, in the same
    pass, with one GPU free: each role alone would fit, both together do not, so neither is set
    (before, both were, and one instance waited for a GPU until the pending timeout)."""
    pd: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart-pd.yaml").read_text())
    pd["spec"]["template"]["restartGracePeriodSeconds"] = 0
    for role in pd["spec"]["template"]["roles"]:
        role["replicas"] = 1
        container = role["entryTemplate"]["spec"]["containers"][0]
        container["readinessProbe"]["periodSeconds"] = 1
        container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        if role["name"] == "decode":
            container["args"] += ["--inter-token-latency", "0.05", "--itl-batch-factor", "0"]
    roles = policy(1, 1, down_window="60s")
    roles["metadata"]["name"] = "pd-load"
    del roles["spec"]["homogeneousTarget"]
    roles["spec"]["disaggregatedTarget"] = {
        "targetRef": {"name": "quickstart-pd"},
        "roles": {
            "prefill": {"minReplicas": 1, "maxReplicas": 2},
            "decode": {"minReplicas": 1, "maxReplicas": 2},
        },
        "ratioConstraint": {
            "numeratorRole": "prefill",
            "denominatorRole": "decode",
            "minRatio": "1",
            "maxRatio": "1",
        },
    }
    split = (
        "the free room holds 0 of the 2 new units the roles ask for together (decode 0 of 1, "
        "prefill 0 of 1), split in proportion to the asks, keeping prefill:decode within 1-1"
    )
    with running_up(tmp_path, spec_file(tmp_path, pd, roles), gpus=3) as up:
        up.wait_available("quickstart-pd")
        load = Load(up.base_url, clients=6, max_tokens=60)
        try:
            found = up.wait_for(
                lambda s: split in (ready_condition(s).get("message") or ""), "the room split", timeout=30
            )
        finally:
            load.stop()
        counts = {r["name"]: r["replicas"] for r in found["servings"][0]["spec"]["template"]["roles"]}
        assert counts == {"prefill": 1, "decode": 1}
        assert not [e for e in found["events"] if e.get("reason") == "Autoscaled"]
        assert all(p["ready"] for p in up.status()["pods"])  # nothing waits for a GPU


def ready_condition(payload: dict[str, Any]) -> dict[str, Any]:
    (found,) = payload["policies"]
    return {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}.get("Ready") or {}
