"""The words the group protocol logs about peers and failed connections (no Python reprs)."""

from __future__ import annotations

import errno

from phalanx.sim.cluster import _address, _connect_error


def test_peer_addresses_read_as_host_and_port() -> None:
    assert _address(("127.0.0.1", 52780)) == "127.0.0.1:52780"
    assert _address(("::1", 8001, 0, 0)) == "[::1]:8001"
    assert _address(None) == "an unknown address"


def test_connect_errors_are_words_without_the_address_tuple() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.2', 8001)")
    assert _connect_error(refused) == "Connection refused"
    assert _connect_error(TimeoutError()) == "timed out"
    assert _connect_error(OSError("no route")) == "no route"
