"""Ids the router makes for requests that came without one: their form, and unique across forks."""

from __future__ import annotations

import itertools
import os
import re

from multidict import CIMultiDict

from phalanx.router.messages import new_request_id, request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_a_made_id_is_32_lower_case_hex_digits_and_never_repeats() -> None:
    made = [new_request_id() for _ in range(10_000)]
    assert all(HEX32.fullmatch(i) for i in made)
    assert len(set(made)) == len(made)
    # One process: one random prefix, a counter after it, mapped so that ids do not count.
    assert {i[:16] for i in made} == {made[0][:16]}
    steps = {(int(b[16:], 16) - int(a[16:], 16)) % 2**64 for a, b in itertools.pairwise(made)}
    assert len(steps) == 1  # one odd factor per process: a one-to-one map of the counter
    assert steps != {1}


def test_request_id_makes_one_only_when_the_client_gave_none() -> None:
    assert request_id(CIMultiDict([("X-Request-Id", "mine")])) == "mine"
    assert HEX32.fullmatch(request_id(CIMultiDict([("X-Request-Id", "")])))
    assert HEX32.fullmatch(request_id(CIMultiDict([("Content-Type", "application/json")])))


def _ids_in_child() -> list[str]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: two ids, then out without running the parent's clean-up
        os.close(read)
        os.write(write, f"{new_request_id()} {new_request_id()}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        ids = pipe.read().split()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return ids


def test_a_forked_child_draws_its_own_prefix() -> None:
    parent = new_request_id()
    first, second = _ids_in_child(), _ids_in_child()
    prefixes = {parent[:16], first[0][:16], second[0][:16]}
    assert len(prefixes) == 3
    # Each child maps its counter its own way.
    assert first[1][16:] != second[1][16:]
    assert new_request_id()[:16] == parent[:16]
