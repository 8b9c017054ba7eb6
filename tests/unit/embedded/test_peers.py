"""Only the user who started `phalanx up` may use its control socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from phalanx.embedded.peers import foreign_socket, peer_uid, refusal


def test_the_same_user_is_allowed_and_anyone_else_refused_by_uid() -> None:
    assert refusal(1000, 1000) is None
    assert refusal(0, 0) is None
    assert (
        refusal(1001, 1000)
        == "uid 1001 may not control the phalanx up of uid 1000; run the command as that user"
    )
    assert refusal(0, 1000) is not None  # root too: it can become that user if it must
    message = refusal(None, 1000)
    assert message is not None and "could not be checked" in message


def test_the_kernel_reports_the_peer_uid_of_a_unix_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_uid(left) == os.geteuid()
    assert peer_uid(None) is None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert peer_uid(tcp) is None  # no peer: the kernel has no credentials to give


def test_a_client_talks_only_to_a_socket_of_its_own_user(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    assert foreign_socket(path, os.geteuid()) is None  # missing: the call says it is not running
    path.write_text("")
    assert foreign_socket(path, os.geteuid()) is None
    message = foreign_socket(path, os.geteuid() + 1)
    assert message is not None and f"belongs to uid {os.geteuid()}" in message
