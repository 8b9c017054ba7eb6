"""Who may use `phalanx up`'s control socket: processes of the user who started it, no one else.

The socket is 0600 in a 0700 directory; the kernel's record of the connecting process
(SO_PEERCRED) is checked as well, so a socket reached some other way (a loosened mode, a
passed descriptor) still refuses other users, with 403. The other way round, a client sends
nothing to a socket another user owns: that `up` would receive our specs.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from phalanx.http.errors import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_NO_UID = 0xFFFFFFFF  # (uid_t)-1: the kernel has no credentials for this socket


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a Unix socket; None when the kernel cannot say."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = _UCRED.unpack(raw)
    return None if uid == _NO_UID else int(uid)


def refusal(peer: int | None, owner: int) -> str | None:
    """Why a caller is refused (None: allowed). Unknown callers are refused too."""
    if peer is None:
        return "the caller's user could not be checked; only the user who started phalanx up may control it"
    if peer != owner:
        return f"uid {peer} may not control the phalanx up of uid {owner}; run the command as that user"
    return None


def same_user_only(owner: int) -> Middleware:
    """An aiohttp middleware answering 403 to any caller whose uid is not `owner`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        peer = peer_uid(transport.get_extra_info("socket") if transport is not None else None)
        problem = refusal(peer, owner)
        if problem is not None:
            return error_response(403, problem)
        return await handler(request)

    return middleware


def foreign_socket(path: Path, me: int) -> str | None:
    """Why a client must not talk to the socket at `path` (another user's); None when it is ours,
    or missing or unreachable (the call itself then says so)."""
    try:
        owner = path.lstat().st_uid
    except OSError:
        return None
    if owner == me:
        return None
    return (
        f"{path} belongs to uid {owner}, not to you (uid {me}): it is another user's phalanx up, "
        "so nothing was sent to it; pass a --state-dir of your own"
    )
