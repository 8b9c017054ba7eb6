"""The state directory: private to the user who runs `phalanx up`, and no link in it is followed.

Another local user must not plant the directory, reach what is in it, or point a file the runtime
writes (the process-group list, a log) at a file of theirs. So the directory is created 0700
whatever the umask, an existing one must be ours and writable by nobody else, its parent must not
let others swap it, and every file in it is opened with O_NOFOLLOW (created with O_EXCL, 0600).
The decisions are pure functions of `stat` fields; the rest is the shell around them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
_PARENT_MODE = 0o755
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class StateDirError(Exception):
    """The state directory (or a directory in it) cannot be trusted; the message says why and the fix."""


def owner_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def dir_problem(
    path: Path, *, owner: int, mode: int, me: int, owner_label: str, inside: bool = False
) -> str | None:
    """Why a directory (`mode` is its lstat/fstat st_mode) may not hold our state, or None.

    `inside`: a directory within the state directory (logs), whose only fix is to remove it.
    """
    where = f"{path} (in the state directory)" if inside else str(path)
    other = "remove it" if inside else "remove it, or pass another --state-dir (or PHALANX_STATE_DIR)"
    if stat.S_ISLNK(mode):
        fix = "remove it" if inside else f"pass the directory itself (--state-dir $(realpath {path}))"
        return f"{where} is a symbolic link; {fix}"
    if not stat.S_ISDIR(mode):
        return f"{where} is not a directory; {other}"
    if owner != me:
        return (
            f"{where} is owned by {owner_label}, not by you (uid {me}): another user could have planted "
            f"it; {other}"
        )
    if mode & 0o022:
        return (
            f"{where} has mode {stat.S_IMODE(mode):04o}: writable by group or others, so what is in it "
            f"may have been planted; if you trust its contents run `chmod 700 {path}`, else {other}"
        )
    return None


def parent_problem(path: Path, *, owner: int, mode: int, me: int, owner_label: str) -> str | None:
    """Why the state directory's parent would let another user swap the directory, or None.

    Group-writable parents are allowed: with one group per user (the common default) the group is
    the user. A world-writable parent needs the sticky bit (as /tmp has), so only we can rename ours.
    """
    if owner not in (me, 0):
        return (
            f"{path} (where the state directory lives) is owned by {owner_label}, who could replace "
            "the state directory; pass a --state-dir in a directory of yours"
        )
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return (
            f"{path} (where the state directory lives) has mode {stat.S_IMODE(mode):04o}: anyone may "
            f"replace the state directory; run `chmod o-w {path}` or pass another --state-dir"
        )
    return None


def ensure_private_dir(path: Path, *, inside: bool = False) -> None:
    """Creates `path` 0700 (missing parents 0755), or checks an existing one and tightens it to 0700.

    Raises StateDirError when it is a link, not a directory, not ours, or writable by group or
    others, or (for the state directory itself, not `inside` it) when its parent lets others swap it.
    """
    me = os.geteuid()
    try:
        _make_parents(path.parent)
        with contextlib.suppress(FileExistsError):
            path.mkdir(DIR_MODE)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    except OSError as exc:
        found = _lstat(path) if exc.errno in (errno.ELOOP, errno.ENOTDIR) else None
        problem = found and _problem(path, found, me, inside)
        raise StateDirError(
            problem or f"cannot use {path}: {exc.strerror}; pass another --state-dir"
        ) from None
    try:
        st = os.fstat(fd)
        problem = _problem(path, st, me, inside)
        if problem:
            raise StateDirError(problem)
        if stat.S_IMODE(st.st_mode) != DIR_MODE:
            os.fchmod(fd, DIR_MODE)  # ours and unwritable by others: nothing planted, only tighten
    finally:
        os.close(fd)
    if not inside:
        st = path.parent.stat()
        problem = parent_problem(
            path.parent, owner=st.st_uid, mode=st.st_mode, me=me, owner_label=owner_name(st.st_uid)
        )
        if problem:
            raise StateDirError(problem)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except OSError:
        return None


def _problem(path: Path, st: os.stat_result, me: int, inside: bool) -> str | None:
    label = owner_name(st.st_uid)
    return dir_problem(path, owner=st.st_uid, mode=st.st_mode, me=me, owner_label=label, inside=inside)


def _make_parents(path: Path) -> None:
    missing: list[Path] = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(_PARENT_MODE)
            directory.chmod(_PARENT_MODE)  # whatever the umask


def create_file(path: Path, *, append: bool = False) -> int:
    """A new file, 0600, for writing; an existing file or link is replaced, never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except FileExistsError:
        path.unlink()  # unlink removes a link itself, not its target
        fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask took away
    return fd


def write_atomic(path: Path, data: bytes) -> None:
    """Replaces `path` with `data` at once (readers see the old or the new file); follows no link."""
    tmp = path.with_name(path.name + ".tmp")
    fd = create_file(tmp)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    tmp.replace(path)  # rename replaces a link at `path`, it does not write through it


def read_tail(path: Path, limit: int) -> bytes | None:
    """The last `limit` bytes of a regular file, None when there is none; a link is not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)  # a planted FIFO must not block
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        handle.seek(max(st.st_size - limit, 0))
        return handle.read(limit)
