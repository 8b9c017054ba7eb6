"""The reaper: a watchdog process that kills every pod when the runtime's process dies.

The runtime starts it with a pipe on its stdin and keeps the write end (`watchdog.Reaper`). Pods
run in their own process groups, whose ids the runtime keeps in a file. When the pipe closes
without a final `quit` line (the runtime crashed, was SIGKILLed, or exited without `close()`), the
reaper SIGKILLs every recorded group. Run as a script with only the standard library:
`python -I reaper.py FILE`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
from pathlib import Path

QUIT = b"quit\n"
_MAX_FILE = 1 << 20


def read_pgids(path: Path) -> list[int]:
    """The recorded groups; a link or anything but a regular file counts as none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        text = os.read(fd, _MAX_FILE).decode("ascii", "replace")
    except OSError:
        return []
    finally:
        os.close(fd)
    return [int(line) for line in text.split() if line.isdigit() and int(line) > 1]


def kill_groups(pgids: list[int]) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


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
