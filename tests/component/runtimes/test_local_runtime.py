"""The local runtime with real child processes on loopback."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from phalanx.api import labels as L
from phalanx.api.modelserving import ModelServing
from phalanx.controller.desired import steady_state
from phalanx.controller.observed import pod_state
from phalanx.runtimes.group_units import startup_seconds
from phalanx.runtimes.local.backoff import BackoffPolicy
from phalanx.runtimes.local.procs import group_alive
from phalanx.runtimes.local.runtime import LocalRuntime
from tests.component.runtimes.helpers import (
    IGNORE_TERM,
    LISTEN_THEN_HANG,
    PRINT_ENV,
    PY,
    condition,
    container_status,
    get_pod,
    pod,
    runtime_process,
    until,
    wait_group_gone,
    wait_no_marked,
)

pytestmark = pytest.mark.component

FAST = BackoffPolicy(base=0.2, cap=1.0, reset_after=60.0)

MakeRuntime = Callable[..., Awaitable[LocalRuntime]]


@pytest.fixture
def mark() -> str:
    return uuid.uuid4().hex


@pytest.fixture
async def make_runtime(tmp_path: Path, mark: str) -> AsyncIterator[MakeRuntime]:
    runtimes: list[LocalRuntime] = []

    async def make(gpus: int = 0) -> LocalRuntime:
        runtime = LocalRuntime(
            tmp_path / f"state{len(runtimes)}", gpus=gpus, restart_backoff=FAST, close_grace=2
        )
        await runtime.start()
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        await runtime.close()
    assert wait_no_marked(mark, 3.0) == [], "processes outlived the runtime"


async def test_pod_gets_its_own_ip_and_turns_ready_by_http_probe(
    make_runtime: MakeRuntime, mark: str
) -> None:
    runtime = await make_runtime()
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 0.2}
    spec = pod(
        "web",
        [PY, "-m", "http.server", "--bind", "$(POD_IP)", "8000"],
        mark=mark,
        ports=[{"name": "http", "containerPort": 8000}],
        readinessProbe=probe,
    )
    await runtime.create(spec)
    await runtime.create(pod("web2", [PY, "-m", "http.server", "--bind", "$(POD_IP)", "8000"], mark=mark))
    web = await until(runtime, lambda: _ready(runtime, "web"))
    ip = web["status"]["podIP"]
    assert ip.startswith("127.") and ip != "127.0.0.1"
    assert runtime.pod_address("default", "web") == ip
    assert web["status"]["phase"] == "Running"
    assert web["spec"]["nodeName"] == "local"
    assert condition(web, "PodScheduled")["status"] == "True"
    # Both listen on port 8000: their addresses differ.
    web2 = await until(runtime, lambda: _ready(runtime, "web2"))
    assert web2["status"]["podIP"] != ip
    reader, writer = await asyncio.open_connection(ip, 8000)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    assert (await reader.read(12)).startswith(b"HTTP/1.0 200")
    writer.close()
    await writer.wait_closed()
    reasons = [e.reason for e in runtime.events()]
    assert "Scheduled" in reasons and "Started" in reasons


async def _ready(runtime: LocalRuntime, name: str) -> dict[str, Any] | None:
    found = await get_pod(runtime, name)
    return found if condition(found, "Ready").get("status") == "True" else None


async def test_crash_restarts_in_place_with_backoff_and_keeps_logs(
    make_runtime: MakeRuntime, mark: str
) -> None:
    runtime = await make_runtime()
    await runtime.create(
        pod("crash", [PY, "-c", "import os; print('run', os.getpid()); raise SystemExit(3)"], mark=mark)
    )
    seen_backoff = False

    async def restarted_twice() -> bool:
        nonlocal seen_backoff
        status = container_status(await get_pod(runtime, "crash"))
        seen_backoff |= status.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
        return int(status.get("restartCount", 0)) >= 2

    began = time.monotonic()
    await until(runtime, restarted_twice)
    # Backoff 0.2 s then 0.4 s before the second restart.
    assert time.monotonic() - began >= 0.5
    assert seen_backoff
    found = await get_pod(runtime, "crash")
    status = container_status(found)
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert found is not None and found["status"]["phase"] == "Running"  # restartPolicy Always
    log = runtime.log_path("default", "crash")
    assert log == runtime.state_dir / "logs" / "crash" / "main.log"
    # The current log may belong to a run that just began; the previous one is a whole run.
    assert runtime.log_path("default", "crash", previous=True).read_text().startswith("run ")
    assert "BackOff" in [e.reason for e in runtime.events()]
    with pytest.raises(LookupError):
        runtime.log_path("default", "crash", "nope")


async def test_restart_policy_never_fails_the_pod(make_runtime: MakeRuntime, mark: str) -> None:
    runtime = await make_runtime()
    await runtime.create({**pod("once", [PY, "-c", "raise SystemExit(2)"], mark=mark)})
    spec = pod("bad", ["/nonexistent/binary"], mark=mark)
    spec["spec"]["restartPolicy"] = "Never"
    await runtime.create(spec)
    noimage = pod("noimage", [], mark=mark)
    await runtime.create(noimage)
    for name in ("once",):
        found = await get_pod(runtime, name)
        assert found is not None
    ok = pod("ok", [PY, "-c", "print('done')"], mark=mark)
    ok["spec"]["restartPolicy"] = "Never"
    await runtime.create(ok)

    async def phase(name: str) -> str:
        return str(((await get_pod(runtime, name)) or {}).get("status", {}).get("phase"))

    await until(runtime, lambda: _phase_is(runtime, "bad", "Failed"))
    await until(runtime, lambda: _phase_is(runtime, "noimage", "Failed"))
    await until(runtime, lambda: _phase_is(runtime, "ok", "Succeeded"))
    bad = container_status(await get_pod(runtime, "bad"))
    assert bad["state"]["terminated"]["reason"] == "StartError"
    noimage_status = container_status(await get_pod(runtime, "noimage"))
    assert noimage_status["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert "no command" in noimage_status["state"]["waiting"]["message"]
    assert await phase("ok") == "Succeeded"


async def _phase_is(runtime: LocalRuntime, name: str, phase: str) -> bool:
    return ((await get_pod(runtime, name)) or {}).get("status", {}).get("phase") == phase


async def test_liveness_failure_kills_and_restarts(make_runtime: MakeRuntime, mark: str) -> None:
    runtime = await make_runtime()
    liveness = {
        "tcpSocket": {"port": 9100},
        "periodSeconds": 0.2,
        "failureThreshold": 2,
        "timeoutSeconds": 0.5,
    }
    await runtime.create(
        pod(
            "sick",
            [PY, "-c", LISTEN_THEN_HANG],
            mark=mark,
            env={"PORT": "9100", "LIVE": "0.6"},
            livenessProbe=liveness,
        )
    )

    async def restarted() -> bool:
        return int(container_status(await get_pod(runtime, "sick")).get("restartCount", 0)) >= 1

    await until(runtime, restarted, timeout=15)
    reasons = [e.reason for e in runtime.events()]
    assert "Unhealthy" in reasons and "Killing" in reasons
    last = container_status(await get_pod(runtime, "sick"))["lastState"]["terminated"]
    assert last["exitCode"] == 128 + signal.SIGTERM


async def test_a_container_killed_for_liveness_is_not_ready_while_it_goes(
    make_runtime: MakeRuntime, mark: str
) -> None:
    # Readiness keeps passing while the container ignores SIGTERM for its grace period: the kubelet has
    # decided to kill it, so no request may be routed to it meanwhile.
    runtime = await make_runtime()
    ready_probe = {"exec": {"command": ["true"]}, "periodSeconds": 0.1}
    live_probe = {"exec": {"command": ["false"]}, "initialDelaySeconds": 1, "periodSeconds": 0.2}
    await runtime.create(
        pod(
            "doomed",
            [PY, "-c", IGNORE_TERM],
            mark=mark,
            grace=3,
            readinessProbe=ready_probe,
            livenessProbe=live_probe,
        )
    )
    await until(runtime, lambda: _ready(runtime, "doomed"))
    await until(
        runtime, lambda: "got SIGTERM" in runtime.log_path("default", "doomed").read_text(), timeout=10
    )
    for _ in range(10):  # well inside the 3 s grace period
        found = await get_pod(runtime, "doomed")
        assert condition(found, "Ready").get("status") == "False", found
        await asyncio.sleep(0.1)


async def test_delete_sends_sigterm_then_sigkill_after_grace(make_runtime: MakeRuntime, mark: str) -> None:
    runtime = await make_runtime()
    await runtime.create(pod("stubborn", [PY, "-c", IGNORE_TERM], mark=mark, grace=1))
    await until(runtime, lambda: _ready(runtime, "stubborn"))
    log = runtime.log_path("default", "stubborn")
    await until(runtime, lambda: "running" in log.read_text())
    pgid = int(container_status(await get_pod(runtime, "stubborn"))["containerID"].removeprefix("local://"))
    assert runtime.pod_pids("default", "stubborn") == [pgid]
    began = time.monotonic()
    await runtime.delete("Pod", "default", "stubborn")
    terminating = await get_pod(runtime, "stubborn")
    assert terminating is not None and terminating["metadata"]["deletionTimestamp"]
    await until(runtime, lambda: _gone(runtime, "stubborn"), timeout=10)
    elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 5
    assert "got SIGTERM" in log.read_text()
    assert not group_alive(pgid)


async def _gone(runtime: LocalRuntime, name: str) -> bool:
    return await get_pod(runtime, name) is None


async def test_gang_waits_whole_then_runs_when_gpus_free(make_runtime: MakeRuntime, mark: str) -> None:
    runtime = await make_runtime(gpus=4)
    sleeper = [PY, "-c", "import time; time.sleep(300)"]
    await runtime.create(pod("hog", sleeper, mark=mark, gpus=2))
    await until(runtime, lambda: _ready(runtime, "hog"))
    assert runtime.gpu_inventory().assignment == {"default/hog": (0, 1)}
    await runtime.create(
        {
            "apiVersion": "scheduling.volcano.sh/v1beta1",
            "kind": "PodGroup",
            "metadata": {"name": "g"},
            "spec": {"minMember": 2},
        }
    )
    gang = {"scheduling.k8s.io/group-name": "g"}
    printer = [PY, "-c", PRINT_ENV % ["CUDA_VISIBLE_DEVICES"]]
    await runtime.create(pod("g-0", printer, mark=mark, gpus=2, annotations=gang))
    await asyncio.sleep(0)  # scheduling runs once the caller yields
    found = await get_pod(runtime, "g-0")
    assert condition(found, "PodScheduled")["message"] == "gang g has 1 of 2 pods"
    await runtime.create(pod("g-1", printer, mark=mark, gpus=2, annotations=gang))
    await asyncio.sleep(0)
    for name in ("g-0", "g-1"):
        scheduled = condition(await get_pod(runtime, name), "PodScheduled")
        assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
        assert scheduled["message"] == "gang g needs 4 GPUs, 2 of 4 free"
    group = (await runtime.list_objects("PodGroup", "default", {}))[0]
    assert group["status"]["phase"] == "Pending"
    assert group["status"]["conditions"][0]["type"] == "Unschedulable"
    assert group["status"]["conditions"][0]["message"] == "gang g needs 4 GPUs, 2 of 4 free"
    assert "FailedScheduling" in [e.reason for e in runtime.events()]

    await runtime.delete("Pod", "default", "hog")
    await until(runtime, lambda: _ready(runtime, "g-0"))
    await until(runtime, lambda: _ready(runtime, "g-1"))
    visible = set()
    for name in ("g-0", "g-1"):
        log = runtime.log_path("default", name)
        text = await until(runtime, lambda log=log: log.exists() and log.read_text())
        visible.add(text.strip().removeprefix("CUDA_VISIBLE_DEVICES="))
        assert runtime.pod_gpus(await get_pod(runtime, name) or {}) in visible
    assert visible == {"0,1", "2,3"}

    async def running() -> bool:
        groups = await runtime.list_objects("PodGroup", "default", {})
        return bool(groups[0]["status"]["phase"] == "Running")

    await until(runtime, running)
    assert runtime.gpu_inventory().free == 0


async def test_entry_address_resolves_to_the_entry_pod(make_runtime: MakeRuntime, mark: str) -> None:
    runtime = await make_runtime()
    command = [PY, "-c", PRINT_ENV % ["ENTRY_ADDRESS", "WORKER_INDEX"]]
    container = {
        "name": "engine",
        "image": "x",
        "command": command,
        "env": [{"name": "PHALANX_LOCAL_RUNTIME_TEST", "value": mark}],
    }
    ms = ModelServing.model_validate(
        {
            "apiVersion": "serving.phalanx.dev/v1alpha1",
            "kind": "ModelServing",
            "metadata": {"name": "qs"},
            "spec": {
                "replicas": 1,
                "template": {
                    "roles": [
                        {
                            "name": "sim",
                            "workerReplicas": 1,
                            "entryTemplate": {
                                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}
                            },
                            "workerTemplate": {
                                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}
                            },
                        }
                    ]
                },
            },
        }
    )
    stored = await runtime.apply_serving(ms)
    for obj in steady_state(stored):
        await runtime.create(obj)
    entry_ip = runtime.pod_address("default", "qs-0-sim-0-0")
    for name, index in (("qs-0-sim-0-0", 0), ("qs-0-sim-0-1", 1)):
        log = runtime.log_path("default", name)
        text = await until(runtime, lambda log=log: log.exists() and log.read_text())
        assert text.split() == [f"ENTRY_ADDRESS={entry_ip}", f"WORKER_INDEX={index}"]
    # Deleting the ModelServing collects everything it owns.
    assert await runtime.delete_serving("default", "qs")
    await until(runtime, lambda: _empty(runtime))


async def _empty(runtime: LocalRuntime) -> bool:
    for kind in ("Pod", "Service", "PodGroup"):
        if await runtime.list_objects(kind, "default", {}):  # type: ignore[arg-type]
            return False
    return True


async def test_close_leaves_no_process_behind(make_runtime: MakeRuntime, mark: str, tmp_path: Path) -> None:
    runtime = await make_runtime()
    # A shell whose child ignores SIGTERM: close() must still get rid of both.
    tree = ["sh", "-c", '"$PY" -c "$PROG" & wait']
    await runtime.create(pod("tree", tree, mark=mark, grace=30, env={"PY": PY, "PROG": IGNORE_TERM}))
    await until(runtime, lambda: _ready(runtime, "tree"))
    log = runtime.log_path("default", "tree")
    await until(runtime, lambda: "running" in log.read_text())
    began = time.monotonic()
    await runtime.close()
    await runtime.close()  # idempotent
    assert time.monotonic() - began < 5
    assert wait_no_marked(mark, 2.0) == []
    assert runtime.reaper_pid is None


def test_reaper_kills_pods_when_the_runtime_is_killed(tmp_path: Path, mark: str) -> None:
    with runtime_process(tmp_path / "state", mark) as victim:
        assert group_alive(victim.pgid)
        victim.kill()
        assert wait_group_gone(victim.pgid, 5.0), "the pod outlived its runtime"
        assert wait_no_marked(mark, 1.0) == []
        deadline = time.monotonic() + 5
        while _alive(victim.reaper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(victim.reaper), "the reaper did not exit"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


async def test_a_local_pod_s_startup_is_its_creation_to_its_first_ready(
    make_runtime: MakeRuntime, mark: str
) -> None:
    # What the autoscaler reads as the startup: the Ready condition's transition time, written
    # when the probe first passes, minus the creation time. The server listens after 1 s.
    runtime = await make_runtime()
    probe = {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 0.2}
    script = (
        "import http.server, os, time; time.sleep(1); "
        "http.server.test(http.server.SimpleHTTPRequestHandler, bind=os.environ['POD_IP'], port=8000)"
    )
    labels = {L.NAME: "demo", L.GROUP_INDEX: "0", L.ROLE: "main", L.ROLE_INDEX: "0", L.POD_INDEX: "0"}
    spec = pod(
        "slow", [PY, "-c", script], mark=mark, labels={**labels, L.ENTRY: "true"},
        ports=[{"name": "http", "containerPort": 8000}], readinessProbe=probe,
    )  # fmt: skip
    began = time.time()
    await runtime.create(spec)
    found = await until(runtime, lambda: _ready(runtime, "slow"))
    ready_after = time.time() - began
    state = pod_state(found)
    assert state is not None
    seconds = startup_seconds(state)
    assert seconds is not None and 1.0 <= seconds <= ready_after + 0.5, (seconds, ready_after)
