"""The pure decisions that keep `phalanx up` safe on a shared host: directories, names, the reaper."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from phalanx.api.names import is_dns1123_label, is_dns1123_subdomain
from phalanx.runtimes.local.logs import name_problems
from phalanx.runtimes.local.statedir import dir_problem, parent_problem
from phalanx.runtimes.local.watchdog import RestartPolicy, describe_exit, may_restart

ME, OTHER = 1000, 1001
DIR, LINK, FILE = stat.S_IFDIR, stat.S_IFLNK, stat.S_IFREG
STATE = Path("/home/me/.local/state/phalanx")


def problem(mode: int, owner: int = ME, inside: bool = False) -> str | None:
    return dir_problem(STATE, owner=owner, mode=mode, me=ME, owner_label=f"user{owner}", inside=inside)


@pytest.mark.parametrize("bits", [0o700, 0o750, 0o755, 0o500, 0o1700])
def test_own_directories_nobody_else_can_write_are_accepted(bits: int) -> None:
    assert problem(DIR | bits) is None


@pytest.mark.parametrize(
    ("mode", "owner", "words"),
    [
        (DIR | 0o777, ME, "has mode 0777: writable by group or others"),
        (DIR | 0o770, ME, "has mode 0770"),
        (DIR | 0o702, ME, "has mode 0702"),
        (DIR | 0o1777, ME, "has mode 1777"),  # sticky or not, others may create files in it
        (DIR | 0o700, OTHER, "is owned by user1001, not by you (uid 1000)"),
        (DIR | 0o700, 0, "is owned by user0"),  # a user's `up` does not take root's directory either
        (LINK | 0o777, ME, "is a symbolic link; pass the directory itself (--state-dir $(realpath"),
        (FILE | 0o600, ME, "is not a directory"),
    ],
)
def test_a_directory_that_may_be_planted_is_refused_naming_it_and_the_fix(
    mode: int, owner: int, words: str
) -> None:
    message = problem(mode, owner)
    assert message is not None
    assert message.startswith(str(STATE)) and words in message
    assert "--state-dir" in message or "chmod 700" in message


def test_inside_the_state_dir_the_fix_is_to_remove_it() -> None:
    message = problem(LINK | 0o777, inside=True)
    assert message == f"{STATE} (in the state directory) is a symbolic link; remove it"
    assert "--state-dir" not in (problem(DIR | 0o700, OTHER, inside=True) or "--state-dir")


@pytest.mark.parametrize(
    ("mode", "owner", "refused"),
    [
        (0o755, ME, False),
        (0o775, ME, False),  # one group per user: the group is the user
        (0o755, 0, False),
        (0o1777, 0, False),  # /tmp: the sticky bit keeps others from renaming our directory
        (0o777, ME, True),
        (0o757, 0, True),
        (0o755, OTHER, True),  # its owner could rename ours away
    ],
)
def test_a_parent_that_lets_others_swap_the_state_dir_is_refused(
    mode: int, owner: int, refused: bool
) -> None:
    message = parent_problem(STATE.parent, owner=owner, mode=DIR | mode, me=ME, owner_label=f"user{owner}")
    assert (message is not None) == refused
    if message:
        assert str(STATE.parent) in message and "--state-dir" in message


@pytest.mark.parametrize(
    ("namespace", "pod", "container", "fields"),
    [
        ("default", "quickstart-0-sim-0-0", "sim", []),
        ("team-a", "a.b-c", None, []),
        ("default", "../../../../var/log", "dpkg", ["pod"]),
        ("default", "p", "../x", ["container"]),
        ("../x", "p", None, ["namespace"]),
        ("default", "p\n", None, ["pod"]),
        ("default", "p", "main\n", ["container"]),
        ("default", ".", None, ["pod"]),
        ("default", "a..b", None, ["pod"]),
        ("default", "/etc", None, ["pod"]),
        ("default", "P", None, ["pod"]),
        ("default", "x" * 254, None, ["pod"]),
        ("x" * 64, "p", "c" * 64, ["namespace", "container"]),
        ("a_b", "c", "", ["namespace", "container"]),
    ],
)
def test_log_names_are_kubernetes_names_and_every_bad_one_is_named(
    namespace: str, pod: str, container: str | None, fields: list[str]
) -> None:
    problems = name_problems(namespace, pod, container)
    assert [field for field, _ in problems] == fields
    for field, message in problems:
        assert message.startswith(field) and "DNS-1123" in message


def test_dns_names_do_not_end_in_a_newline() -> None:
    # `re.match` with `$` accepts a trailing newline; Kubernetes does not.
    assert not is_dns1123_label("main\n") and not is_dns1123_subdomain("a.b\n")
    assert is_dns1123_label("main") and is_dns1123_subdomain("a.b")


def test_the_reaper_restart_budget() -> None:
    policy = RestartPolicy(limit=2, window=60.0)
    assert may_restart([], 100.0, policy)
    assert may_restart([90.0], 100.0, policy)
    assert not may_restart([50.0, 90.0], 100.0, policy)
    assert may_restart([30.0, 90.0], 100.0, policy)  # the first restart is out of the window
    assert not may_restart([], 0.0, RestartPolicy(limit=0))


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (-9, "was killed by SIGKILL"),
        (-15, "was killed by SIGTERM"),
        (-99, "signal 99"),
        (0, "exited with code 0"),
        (3, "exited with code 3"),
    ],
)
def test_how_the_reaper_ended_is_said_in_words(code: int, text: str) -> None:
    assert text in describe_exit(code)
