"""The runtime's side of the reaper: start it, keep its process-group file current, restart it.

If the reaper dies (kill -9, the OOM killer) while the runtime runs, a later death of the runtime
would leave every pod's processes behind. So the runtime watches it: a dead reaper is restarted
at once with the same groups; when it cannot be (spawning fails, or it keeps dying), the runtime
is told to stop its pods rather than run them unguarded. `may_restart` is the pure decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from phalanx.runtimes.local import reaper as reaper_script
from phalanx.runtimes.local.statedir import write_atomic


@dataclass(frozen=True)
class RestartPolicy:
    """How the reaper is watched: checked every `check_every` s, at most `limit` restarts per `window` s."""

    check_every: float = 0.2
    limit: int = 5
    window: float = 60.0


def recent_restarts(restarts: Sequence[float], now: float, policy: RestartPolicy) -> int:
    """How many of the earlier restarts (monotonic times) count against the budget now."""
    return sum(1 for t in restarts if now - t < policy.window)


def may_restart(restarts: Sequence[float], now: float, policy: RestartPolicy) -> bool:
    return recent_restarts(restarts, now, policy) < policy.limit


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def write_pgids(path: Path, pgids: set[int]) -> None:
    """Atomic, as the reaper may read the file at any moment; a planted link is replaced, not followed."""
    write_atomic(path, "".join(f"{pgid}\n" for pgid in sorted(pgids)).encode())


class Reaper:
    """Starts the reaper process and keeps the process-group file current."""

    def __init__(self, pgid_file: Path) -> None:
        self.pgid_file = pgid_file
        self.pgids: set[int] = set()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts it, or a new one in place of one that died (raises OSError if it cannot)."""
        self._release()
        write_pgids(self.pgid_file, self.pgids)
        # Its own session: Ctrl-C in the terminal must not kill the reaper before the pods.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(Path(reaper_script.__file__).resolve()), str(self.pgid_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def exit_code(self) -> int | None:
        """None while it runs (or was never started); its exit status once it is gone."""
        return self._proc.poll() if self._proc is not None else None

    def add(self, pgid: int) -> None:
        self.pgids.add(pgid)
        write_pgids(self.pgid_file, self.pgids)

    def discard(self, pgid: int) -> None:
        if pgid in self.pgids:
            self.pgids.discard(pgid)
            write_pgids(self.pgid_file, self.pgids)

    def stop(self) -> None:
        """A clean stop: the reaper exits without killing (the runtime has stopped the pods)."""
        proc = self._proc
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(reaper_script.QUIT)
            proc.stdin.flush()
        self._release()
        self.pgid_file.unlink(missing_ok=True)

    def _release(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def guard(
    reaper: Reaper,
    policy: RestartPolicy,
    restarted: Callable[[str], None],
    lost: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Runs until cancelled, or until the reaper is lost (then calls `lost` once and returns)."""
    restarts: list[float] = []
    while True:
        await asyncio.sleep(policy.check_every)
        code = reaper.exit_code()
        if code is None:
            continue
        old, now = reaper.pid, clock()
        what = f"the reaper (pid {old}) {describe_exit(code)}"
        if not may_restart(restarts, now, policy):
            recent = recent_restarts(restarts, now, policy)
            plural = "" if recent == 1 else "s"
            lost(f"{what} after {recent} restart{plural} within the last {policy.window:g}s")
            return
        try:
            reaper.start()
        except OSError as exc:
            lost(f"{what} and cannot be restarted: {exc.strerror or exc}")
            return
        restarts.append(now)
        restarted(f"{what}; restarted as pid {reaper.pid}, guarding {len(reaper.pgids)} process groups")
