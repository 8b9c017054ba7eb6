"""The reaper: a watchdog process that kills every pod when the runtime's process dies.

The runtime starts it with a pipe on its stdin and keeps the write end. Pods run in their own
process groups, whose ids the runtime keeps in a file. When the pipe closes without a final
`quit` line (the runtime crashed, was SIGKILLed, or exited without `close()`), the reaper SIGKILLs
every recorded group. Run as a script with only the standard library: `python -I reaper.py FILE`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

QUIT = b"quit\n"
_PR_SET_PDEATHSIG = 1


def read_pgids(path: Path) -> list[int]:
    try:
        text = path.read_text()
    except OSError:
        return []
    return [int(line) for line in text.split() if line.isdigit() and int(line) > 1]


def write_pgids(path: Path, pgids: set[int]) -> None:
    """Atomic: the reaper may read the file at any moment."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{pgid}\n" for pgid in sorted(pgids)))
    tmp.replace(path)


def kill_groups(pgids: list[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


_libc: ctypes.CDLL | None = None
with contextlib.suppress(OSError):
    _libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """preexec_fn for children: SIGKILL when the parent goes (Linux only; a no-op elsewhere)."""
    if _libc is not None and sys.platform.startswith("linux"):
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Reaper:
    """The runtime's side: starts the watchdog and keeps the process-group file current."""

    def __init__(self, pgid_file: Path) -> None:
        self.pgid_file = pgid_file
        self.pgids: set[int] = set()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        write_pgids(self.pgid_file, self.pgids)
        # Its own session: Ctrl-C in the terminal must not kill the reaper before the pods.
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).resolve()), str(self.pgid_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def add(self, pgid: int) -> None:
        self.pgids.add(pgid)
        write_pgids(self.pgid_file, self.pgids)

    def discard(self, pgid: int) -> None:
        if pgid in self.pgids:
            self.pgids.discard(pgid)
            write_pgids(self.pgid_file, self.pgids)

    def stop(self) -> None:
        """A clean stop: the reaper exits without killing (the runtime has stopped the pods)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(QUIT)
            proc.stdin.flush()
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.pgid_file.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    for name in ("SIGINT", "SIGHUP", "SIGPIPE"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    path = Path(argv[1])
    received = b""
    while True:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        received += chunk
    if received.endswith(QUIT):
        return 0
    kill_groups(read_pgids(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
