"""The runtime's side of the reaper: start it and keep its process-group file current."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from phalanx.runtimes.local import reaper as reaper_script
from phalanx.runtimes.local.statedir import write_atomic


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
        """Starts it (raises OSError if it cannot)."""
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
