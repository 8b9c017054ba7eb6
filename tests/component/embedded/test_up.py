"""`phalanx up` end to end: real processes on loopback, the real `openai` client, real signals."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.component.embedded.harness import QUICKSTART, Up, quickstart, running_up
from tests.component.runtimes.helpers import reaper_pids, wait_new_reaper

pytestmark = pytest.mark.component

ENGINE_ARGS = "spec.template.roles.0.entryTemplate.spec.containers.0.args"
WORKER_ARGS = "spec.template.roles.0.workerTemplate.spec.containers.0.args"


def fast(**changes: Any) -> dict[str, Any]:
    """The quickstart with test-speed probes and no restart grace period."""
    data = quickstart(**changes)
    template = data["spec"]["template"]
    template["restartGracePeriodSeconds"] = changes.get("spec.template.restartGracePeriodSeconds", 0)
    for role in template["roles"]:
        container = role["entryTemplate"]["spec"]["containers"][0]
        container["readinessProbe"]["periodSeconds"] = 1
        container["livenessProbe"]["periodSeconds"] = 2
        role["entryTemplate"]["spec"]["terminationGracePeriodSeconds"] = 10
    return data


def client(up: Up) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0, timeout=30)


def ask(up: Up, text: str = "Hello there") -> str:
    reply = client(up).chat.completions.create(
        model="tiny-test", messages=[{"role": "user", "content": text}], max_tokens=8
    )
    return reply.choices[0].message.content or ""


def group_status(up: Up, index: int) -> dict[str, Any]:
    for group in up.serving()["status"]["groups"]:
        if group["index"] == index:
            return group  # type: ignore[no-any-return]
    raise AssertionError(f"no group {index}")


def events(up: Up) -> list[str]:
    return [e["reason"] for e in up.status()["events"]]


def test_quickstart_serves_the_openai_client_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    with running_up(tmp_path, QUICKSTART) as up:
        up.wait_available(timeout=90)
        api = client(up)
        assert "tiny-test" in [m.id for m in api.models.list()]
        reply = api.chat.completions.create(
            model="tiny-test", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens == 8
        stream = api.chat.completions.create(
            model="tiny-test",
            messages=[{"role": "user", "content": "Stream please"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
        completion = api.completions.create(model="tiny-test", prompt="Once upon a time", max_tokens=5)
        assert completion.choices[0].text
        with pytest.raises(openai.NotFoundError):
            api.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])

        shown = up.phalanx("status")
        assert shown.returncode == 0, shown.stderr
        assert "quickstart-1" in shown.stdout and "Ready" in shown.stdout
        logs = up.phalanx("logs", "quickstart-0-sim-0-0")
        assert logs.returncode == 0 and logs.stdout

        assert up.stop(signal.SIGINT) == 0
        assert up.leftovers() == []


def test_killing_up_itself_leaves_no_pod_behind(tmp_path: Path) -> None:
    with running_up(tmp_path, fast()) as up:
        up.wait_available(timeout=90)
        pids = [pid for pod in up.status()["pods"] for pid in pod["pids"]]
        assert pids
        assert up.process is not None
        up.process.kill()
        up.process.wait(10)
        assert up.leftovers(wait=10) == []


def test_kill_9_of_the_reaper_then_of_up_leaves_no_pod_behind(tmp_path: Path) -> None:
    with running_up(tmp_path, fast()) as up:
        up.wait_for(lambda payload: bool(payload["pods"]) and all(p["pids"] for p in payload["pods"]), "pods")
        pgids = up.state_dir / "pgids"
        [reaper] = reaper_pids(pgids)
        os.kill(reaper, signal.SIGKILL)
        assert wait_new_reaper(pgids, reaper, timeout=3.0) is not None, "no new reaper within 3 s"
        payload = up.wait_for(lambda p: "ReaperRestarted" in [e["reason"] for e in p["events"]], "the event")
        event = next(e for e in payload["events"] if e["reason"] == "ReaperRestarted")
        assert f"pid {reaper}" in event["message"] and "SIGKILL" in event["message"]
        assert payload["reaperPid"] != reaper
        assert up.process is not None
        up.process.kill()
        up.process.wait(10)
        assert up.leftovers(wait=10) == []


@pytest.mark.parametrize(
    ("policy", "victim"),
    [
        ("RoleRecreate", "quickstart-0-sim-0-1"),  # a worker
        ("RoleRecreate", "quickstart-1-sim-0-0"),  # an entry
        ("ServingGroupRecreate", "quickstart-0-sim-0-1"),
    ],
)
def test_kill_9_of_a_pod_recovers_by_policy(tmp_path: Path, policy: str, victim: str) -> None:
    with running_up(tmp_path, fast(**{"spec.recoveryPolicy": policy})) as up:
        up.wait_available(timeout=90)
        group = int(victim.split("-")[1])
        before = {p["name"]: p["pids"] for p in up.status()["pods"]}
        os.kill(before[victim][0], signal.SIGKILL)
        up.wait_for(lambda _: group_status(up, group)["failures"] >= 1, "the recovery to start", timeout=30)
        up.wait_available(timeout=60)
        after = {p["name"]: p["pids"] for p in up.status()["pods"]}
        other = 1 - group
        # The whole role instance (one per group here) was recreated; the other group was not touched.
        assert after[f"quickstart-{group}-sim-0-0"] != before[f"quickstart-{group}-sim-0-0"]
        assert after[f"quickstart-{group}-sim-0-1"] != before[f"quickstart-{group}-sim-0-1"]
        assert after[f"quickstart-{other}-sim-0-0"] == before[f"quickstart-{other}-sim-0-0"]
        expected = "GroupRecreate" if policy == "ServingGroupRecreate" else "RoleRecreate"
        assert expected in events(up)
        for _ in range(4):
            assert ask(up)


def test_scale_groups_and_roles_from_a_second_terminal(tmp_path: Path) -> None:
    with running_up(tmp_path, fast()) as up:
        up.wait_available(timeout=90)
        assert up.phalanx("scale", "quickstart", "--replicas", "3").returncode == 0
        up.wait_available(groups=3, timeout=60)
        assert up.phalanx("scale", "quickstart", "--replicas", "1").returncode == 0
        up.wait_available(groups=1, timeout=60)
        assert sorted(p["name"] for p in up.status()["pods"]) == [
            "quickstart-0-sim-0-0",
            "quickstart-0-sim-0-1",
        ]
        assert up.phalanx("scale", "quickstart", "--replicas", "2", "--role", "sim").returncode == 0
        up.wait_for(
            lambda s: sum(1 for p in s["pods"] if p["ready"] and not p["terminating"]) == 4,
            "a second role instance",
        )
        up.wait_available(groups=1)
        assert ask(up)
        wrong = up.phalanx("scale", "quickstart", "--replicas", "2", "--role", "decode")
        assert wrong.returncode == 1
        assert "has no role 'decode'" in wrong.stderr


def _changed_args(spec: dict[str, Any], seed: str) -> dict[str, Any]:
    role = spec["spec"]["template"]["roles"][0]
    for template in ("entryTemplate", "workerTemplate"):
        container = role[template]["spec"]["containers"][0]
        container["args"] = [*container["args"], "--seed", seed]
    return spec


def test_rollout_with_a_partition_stops_at_the_partition(tmp_path: Path) -> None:
    rolling = {"maxUnavailable": 1, "maxSurge": 0, "partition": 1}
    spec = fast(**{"spec.rolloutStrategy.rollingUpdateConfiguration": rolling})
    with running_up(tmp_path, spec) as up:
        up.wait_available(timeout=90)
        old = up.serving()["status"]["updateRevision"]
        applied = up.phalanx("apply", "-f", str(up.write_spec(_changed_args(spec, "7"), "v2.yaml")))
        assert applied.returncode == 0, applied.stderr
        assert "configured" in applied.stdout

        def partition_reached(_: dict[str, Any]) -> bool:
            conditions = {c["type"]: c for c in up.serving()["status"]["conditions"]}
            return conditions["UpdateInProgress"]["reason"] == "PartitionReached"

        up.wait_for(partition_reached, "the rollout to stop at the partition", timeout=90)
        up.wait_available(timeout=60)
        status = up.serving()["status"]
        assert group_status(up, 0)["revision"] == old
        assert group_status(up, 1)["revision"] == status["updateRevision"] != old
        assert status["currentRevision"] == old
        assert status["updatedReplicas"] == 1


class Load:
    """Steady traffic through the router from a few threads, counting every failure."""

    def __init__(self, up: Up, workers: int = 4) -> None:
        self.up = up
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _run(self, worker: int) -> None:
        api = client(self.up)
        count = 0
        while not self.stop.is_set():
            count += 1
            try:
                if count % 2:
                    reply = api.chat.completions.create(
                        model="tiny-test",
                        messages=[{"role": "user", "content": f"w{worker} {count}"}],
                        max_tokens=16,
                    )
                    assert reply.choices[0].finish_reason == "length"
                else:
                    stream = api.chat.completions.create(
                        model="tiny-test",
                        messages=[{"role": "user", "content": f"s{worker} {count}"}],
                        max_tokens=16,
                        stream=True,
                    )
                    finish = [c.choices[0].finish_reason for c in stream if c.choices]
                    assert finish[-1] == "length", finish
                with self.lock:
                    self.ok += 1
            except Exception as exc:  # every kind of failure counts
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_rollout_under_load_loses_no_request(tmp_path: Path) -> None:
    spec = fast(**{"spec.rolloutStrategy.rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 1}})
    with running_up(tmp_path, spec) as up:
        up.wait_available(timeout=90)
        old = up.serving()["status"]["updateRevision"]
        with Load(up) as load:
            time.sleep(2)
            applied = up.phalanx("apply", "-f", str(up.write_spec(_changed_args(spec, "9"), "v2.yaml")))
            assert applied.returncode == 0, applied.stderr

            def rolled(_: dict[str, Any]) -> bool:
                status = up.serving()["status"]
                conditions = {c["type"]: c for c in status["conditions"]}
                return (
                    status["updateRevision"] != old
                    and conditions["UpdateInProgress"]["reason"] == "UpdateComplete"
                    and conditions["Available"]["status"] == "True"
                    and status["replicas"] == 2
                )

            up.wait_for(rolled, "the rollout to finish", timeout=120)
            time.sleep(1)
        assert load.failures == []
        assert load.ok > 20
        reasons = events(up)
        assert "GroupDraining" in reasons and "GroupDeleted" in reasons


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    up = Up(tmp_path, fast())
    missing = up.phalanx("status")
    assert missing.returncode == 1
    assert "phalanx up is not running" in missing.stderr
    broken = fast(**{"spec.replicas": -1})
    path = up.write_spec(broken, "broken.yaml")
    started = up.phalanx("apply", "-f", str(path))
    assert started.returncode == 1
    refused = up.phalanx("up", "-f", str(path), "--port", "0")
    assert refused.returncode == 1
    assert "broken.yaml:" in refused.stderr and "spec.replicas" in refused.stderr
    assert "Traceback" not in refused.stderr
    with running_up(tmp_path, fast()) as running:
        running.wait_available(timeout=90)
        bad = running.phalanx("apply", "-f", str(path))
        assert bad.returncode == 1
        assert "spec.replicas" in bad.stderr and "broken.yaml:" in bad.stderr
        assert "Traceback" not in bad.stderr


def test_a_second_up_on_the_same_state_dir_is_refused_and_harms_nothing(tmp_path: Path) -> None:
    with running_up(tmp_path, fast()) as up:
        up.wait_available(timeout=90)
        second = up.phalanx("up", "-f", str(up.spec_path), "--port", "0", timeout=60)
        assert second.returncode == 1
        assert "already running" in second.stdout + second.stderr
        assert up.phalanx("status").returncode == 0  # the first one still answers
        assert ask(up)
