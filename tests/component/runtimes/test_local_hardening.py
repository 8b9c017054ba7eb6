"""The local runtime on a shared host: a private state directory, no link followed, a watched reaper."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from phalanx.runtimes.local.logs import BadLogRequest
from phalanx.runtimes.local.procs import die_with
from phalanx.runtimes.local.runtime import LocalRuntime
from phalanx.runtimes.local.statedir import StateDirError, read_tail
from phalanx.runtimes.local.watchdog import RestartPolicy
from tests.component.runtimes.helpers import (
    get_pod,
    pod,
    reaper_pids,
    runtime_process,
    umask,
    until,
    wait_group_gone,
    wait_new_reaper,
    wait_no_marked,
)

pytestmark = pytest.mark.component

NOBODY = 65534
PRINT_AND_WAIT = ["sh", "-c", "echo started; sleep 300 & wait"]


@pytest.fixture
def mark() -> str:
    return uuid.uuid4().hex


@pytest.fixture(params=[0o000, 0o777], ids=["umask-000", "umask-777"])
def any_umask(request: pytest.FixtureRequest) -> Iterator[None]:
    with umask(request.param):
        yield


@pytest.fixture
async def runtimes(mark: str) -> AsyncIterator[list[LocalRuntime]]:
    made: list[LocalRuntime] = []
    yield made
    for runtime in made:
        await runtime.close()
    assert wait_no_marked(mark, 3.0) == [], "processes outlived the runtime"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


async def running(runtime: LocalRuntime, name: str) -> bool:
    obj = await get_pod(runtime, name)
    statuses = ((obj or {}).get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and "running" in statuses[0]["state"]


# --- the state directory -----------------------------------------------------------------------


async def test_whatever_the_umask_everything_in_the_state_dir_is_private(
    tmp_path: Path, mark: str, any_umask: None, runtimes: list[LocalRuntime]
) -> None:
    state = tmp_path / "new" / "state"
    runtime = LocalRuntime(state, gpus=0)
    runtimes.append(runtime)
    await runtime.start()
    await runtime.create(pod("p", PRINT_AND_WAIT, mark=mark))
    log = runtime.log_path("default", "p")
    await until(runtime, lambda: log.exists() and "started" in log.read_text())
    assert mode(state) == 0o700
    assert mode(state / "logs") == 0o700
    assert mode(log.parent) == 0o700
    assert mode(log) == 0o600
    assert mode(state / "pgids") == 0o600
    assert mode(state.parent) == 0o755  # parents it made: not writable by others either


async def test_an_existing_own_dir_readable_by_others_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    runtime = LocalRuntime(state, gpus=0)
    await runtime.start()
    await runtime.close()
    assert mode(state) == 0o700


def _planted_world_writable(path: Path) -> str:
    path.mkdir()
    path.chmod(0o777)
    return "mode 0777"


def _planted_by_nobody(path: Path) -> str:
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)
    return f"uid {NOBODY}"


def _planted_link(path: Path) -> str:
    target = path.parent / "elsewhere"
    target.mkdir(mode=0o700)
    path.symlink_to(target)
    return "symbolic link"


def _planted_file(path: Path) -> str:
    path.write_text("")
    return "not a directory"


@pytest.mark.parametrize(
    "plant",
    [_planted_world_writable, _planted_by_nobody, _planted_link, _planted_file],
    ids=["mode-0777", "owned-by-nobody", "symlink", "a-file"],
)
async def test_a_planted_state_dir_is_refused_with_the_fix(tmp_path: Path, plant: object) -> None:
    state = tmp_path / "state"
    detail = plant(state)  # type: ignore[operator]
    before = sorted(p.name for p in state.iterdir()) if state.is_dir() else None
    runtime = LocalRuntime(state, gpus=0)
    with pytest.raises(StateDirError) as refused:
        await runtime.start()
    message = str(refused.value)
    assert str(state) in message and detail in message
    assert "--state-dir" in message
    assert runtime.reaper_pid is None
    after = sorted(p.name for p in state.iterdir()) if state.is_dir() else None
    assert after == before  # nothing written into it


async def test_a_parent_anyone_may_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StateDirError, match=r"shared .*mode 0777.*chmod o-w"):
        await LocalRuntime(shared / "state", gpus=0).start()
    shared.chmod(0o1777)  # like /tmp: nobody else may rename our directory
    runtime = LocalRuntime(shared / "state", gpus=0)
    await runtime.start()
    await runtime.close()


async def test_links_planted_in_the_state_dir_are_not_followed(
    tmp_path: Path, mark: str, runtimes: list[LocalRuntime]
) -> None:
    state, victims = tmp_path / "state", tmp_path / "victims"
    state.mkdir(mode=0o700)
    victims.mkdir()
    (state / "logs").mkdir(mode=0o700)
    kept = {name: f"{name} must stay as it is\n" for name in ("pgids-tmp", "pgids", "previous")}
    for name, text in kept.items():
        (victims / name).write_text(text)
    (state / "pgids.tmp").symlink_to(victims / "pgids-tmp")
    (state / "pgids").symlink_to(victims / "pgids")
    # A pod's log directory linked elsewhere, and links where another pod's log files go.
    (victims / "dir").mkdir()
    (state / "logs" / "linked-dir").symlink_to(victims / "dir")
    (state / "logs" / "linked-files").mkdir(mode=0o700)
    (state / "logs" / "linked-files" / "main.log").symlink_to(victims / "created")  # dangling
    (state / "logs" / "linked-files" / "main.previous.log").symlink_to(victims / "previous")

    runtime = LocalRuntime(state, gpus=0)
    runtimes.append(runtime)
    await runtime.start()
    await runtime.create(pod("linked-files", PRINT_AND_WAIT, mark=mark))
    await runtime.create(pod("linked-dir", PRINT_AND_WAIT, mark=mark))

    async def settled(name: str) -> bool:
        obj = await get_pod(runtime, name)
        return await running(runtime, name) or ((obj or {}).get("status") or {}).get("phase") == "Failed"

    # A container's log is opened before its process starts: once both pods settled, it is done.
    await until(runtime, lambda: settled("linked-files"))
    await until(runtime, lambda: settled("linked-dir"))
    for name, text in kept.items():
        assert (victims / name).read_text() == text, f"{name} was written through a link"
    assert not (victims / "created").exists(), "a log was created through a dangling link"
    assert list((victims / "dir").iterdir()) == [], "logs were written into a linked directory"
    assert (state / "pgids").is_file() and not (state / "pgids").is_symlink()
    log = state / "logs" / "linked-files" / "main.log"
    assert not log.is_symlink() and mode(log) == 0o600
    await until(runtime, lambda: "started" in log.read_text())
    assert runtime.log_path("default", "linked-files") == log
    obj = await get_pod(runtime, "linked-dir")
    assert "symbolic link" in obj["status"]["message"]  # type: ignore[index]
    with pytest.raises(BadLogRequest, match="not under"):
        runtime.log_path("default", "linked-dir", "main")


def test_a_log_is_read_only_from_a_regular_file_never_through_a_link(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not yours\n")
    (tmp_path / "link.log").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo.log")  # opening it blocking would hang `phalanx logs`
    (tmp_path / "real.log").write_bytes(b"0123456789")
    assert read_tail(tmp_path / "link.log", 100) is None
    assert read_tail(tmp_path / "fifo.log", 100) is None
    assert read_tail(tmp_path / "missing.log", 100) is None
    assert read_tail(tmp_path / "real.log", 4) == b"6789"


async def test_log_names_must_be_kubernetes_names(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_text("secret\n")
    runtime = LocalRuntime(tmp_path / "state", gpus=0)
    await runtime.start()
    try:
        climb = "../../outside"
        assert (runtime.state_dir / "logs" / climb / "secret.log").exists()  # what the old join reached
        for namespace, name, container, field in [
            ("default", climb, "secret", "pod"),
            ("default", "p", "../../../outside/secret", "container"),
            ("../outside", "x", None, "namespace"),
            ("default", "p\n", None, "pod"),
            ("Default", "p", None, "namespace"),
        ]:
            with pytest.raises(BadLogRequest) as refused:
                runtime.log_path(namespace, name, container)
            assert refused.value.field == field
            assert "DNS-1123" in str(refused.value)
    finally:
        await runtime.close()


# --- the reaper is watched ---------------------------------------------------------------------


def test_a_killed_reaper_is_replaced_and_still_kills_the_pods(tmp_path: Path, mark: str) -> None:
    """kill -9 of the reaper, then of the runtime's process: no pod process may survive."""
    with runtime_process(tmp_path / "state", mark) as victim:
        os.kill(victim.reaper, signal.SIGKILL)
        began = time.monotonic()
        replacement = wait_new_reaper(tmp_path / "state" / "pgids", victim.reaper, timeout=3.0)
        assert replacement is not None, "no new reaper within 3 s"
        print(f"new reaper after {time.monotonic() - began:.2f}s")
        victim.kill()
        assert wait_group_gone(victim.pgid, 5.0), "the pod outlived its runtime"
        assert wait_no_marked(mark, 2.0) == [], "a pod's child (the shell's sleep) survived"


async def guarded(
    tmp_path: Path, mark: str, runtimes: list[LocalRuntime], policy: RestartPolicy
) -> tuple[LocalRuntime, list[str]]:
    """A runtime with a running pod whose reaper is watched by `policy`; and where its loss is told."""
    lost: list[str] = []
    runtime = LocalRuntime(tmp_path / "state", gpus=0, reaper_policy=policy, on_unguarded=lost.append)
    runtimes.append(runtime)
    await runtime.start()
    await runtime.create(pod("guarded", PRINT_AND_WAIT, mark=mark))
    await until(runtime, lambda: running(runtime, "guarded"))
    return runtime, lost


async def test_a_reaper_that_keeps_dying_stops_every_pod(
    tmp_path: Path, mark: str, runtimes: list[LocalRuntime]
) -> None:
    runtime, lost = await guarded(tmp_path, mark, runtimes, RestartPolicy(check_every=0.05, limit=1))
    first = runtime.reaper_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await until(runtime, lambda: runtime.reaper_pid not in (None, first), timeout=3.0)
    restarted = [e for e in runtime.events() if e.reason == "ReaperRestarted"]
    assert restarted and f"pid {first}" in restarted[0].message and "SIGKILL" in restarted[0].message
    assert await running(runtime, "guarded")  # the pods keep running under the new reaper

    second = runtime.reaper_pid
    assert second is not None
    os.kill(second, signal.SIGKILL)  # over the budget of one restart
    await until(runtime, lambda: lost, timeout=3.0)
    assert "after 1 restart within the last 60s" in lost[0] and "pods are stopped" in lost[0]
    assert any(e.reason == "ReaperLost" for e in runtime.events())
    assert await asyncio.to_thread(wait_no_marked, mark, 5.0) == []
    # No pod starts unguarded: a new one waits, saying why.
    await runtime.create(pod("after", PRINT_AND_WAIT, mark=mark))

    async def refused() -> str:
        obj = await get_pod(runtime, "after")
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return next((c.get("message", "") for c in conditions if c["type"] == "PodScheduled"), "")

    assert "not started" in await until(runtime, refused)
    assert not await running(runtime, "after")


async def test_a_reaper_that_cannot_be_restarted_stops_every_pod(
    tmp_path: Path, mark: str, runtimes: list[LocalRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, lost = await guarded(tmp_path, mark, runtimes, RestartPolicy(check_every=0.05))

    def cannot_fork(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    # Spawning fails as it does when the process table is full.
    monkeypatch.setattr("phalanx.runtimes.local.watchdog.subprocess.Popen", cannot_fork)
    reaper = runtime.reaper_pid
    assert reaper is not None
    os.kill(reaper, signal.SIGKILL)
    await until(runtime, lambda: lost, timeout=3.0)
    assert "cannot be restarted: Resource temporarily unavailable" in lost[0]
    assert await asyncio.to_thread(wait_no_marked, mark, 5.0) == []
    assert reaper_pids(runtime.state_dir / "pgids") == []


# --- PR_SET_PDEATHSIG --------------------------------------------------------------------------


def test_a_child_whose_parent_died_before_prctl_kills_itself() -> None:
    """The fork/prctl race: a child that already lost the parent it was started for does not run."""
    fine = subprocess.run(["true"], preexec_fn=die_with(os.getpid()), check=False)
    assert fine.returncode == 0
    orphan = subprocess.run(["true"], preexec_fn=die_with(os.getpid() + 1_000_000), check=False)
    assert orphan.returncode == -signal.SIGKILL
