from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import os
from pathlib import Path

import pytest

from phalanx.router.admission import Priority
from phalanx.router.auth import (
    ApiKey,
    KeyEntry,
    KeyFileError,
    KeyStore,
    bearer_token,
    digest,
    load_keys,
    match_key,
    parse_key_file,
    parse_secret_files,
)
from phalanx.router.rejection import Rejection

ALICE = "sk-alice-7f3a9c2e"
BATCH = "sk-batch-0d41e8b5"
PLAIN = "sk-plain-5be2c7a1"

KEY_FILE = f"""\
# name:key [rpm=N] [tpm=N]
alice:{ALICE} rpm=600 tpm=200000

batch:{BATCH}   tpm=2000000   # the batch jobs
   {PLAIN}
"""


def keys_of(entries: list[KeyEntry]) -> list[ApiKey]:
    return [e.key for e in entries]


def bump(path: Path) -> None:
    """Make a rewrite visible even on a file system with coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# -- the key file ----------------------------------------------------------------------------


def test_key_file_names_limits_comments_and_nameless_keys() -> None:
    entries = parse_key_file(KEY_FILE, "keys.txt")
    assert keys_of(entries) == [
        ApiKey("alice", 600, 200000),
        ApiKey("batch", None, 2000000),
        ApiKey(f"key-{digest(PLAIN).hex()[:8]}"),
    ]
    assert [e.digest for e in entries] == [digest(ALICE), digest(BATCH), digest(PLAIN)]


def test_a_key_may_hold_a_colon_when_named() -> None:
    (entry,) = parse_key_file("ops:abc:defgh-123\n", "k")
    assert entry.key.name == "ops"
    assert entry.digest == digest("abc:defgh-123")


def test_every_bad_line_is_reported_with_its_number_and_without_the_key() -> None:
    text = "\n".join(
        [
            "alice:abc12",  # 1: too short
            f"bob:{ALICE} rpm=0",  # 2: limit below 1
            f"carol:{BATCH} burst=5 tpm=x",  # 3: unknown option, bad number
            f"dave:{PLAIN} rpm=5 rpm=6",  # 4: repeated option
            "# a comment",  # 5
            f"bad name:{PLAIN}",  # 6: a space splits it: `bad` is a key too short, the rest stray text
            f"b@d:{PLAIN}",  # 7: bad name
            f"alice:{PLAIN}-x",  # 8: duplicate name (line 1 was rejected, so: none)
            f"erin:{PLAIN}-x",  # 9: duplicate key of line 8
            f"erin:{PLAIN}-y",  # 10: duplicate name of line 9
            "sk-secret-\u00e9\u00e9\u00e9\u00e9",  # 11: not ASCII
        ]
    )
    with pytest.raises(KeyFileError) as info:
        parse_key_file(text, "keys.txt")
    problems = info.value.problems
    assert problems == [
        "keys.txt:1: the key is shorter than 8 characters",
        "keys.txt:2: `rpm` must be a whole number of at least 1",
        "keys.txt:3: only `rpm=N`, `tpm=N` and `priority=P` may follow the key",
        "keys.txt:3: `tpm` must be a whole number of at least 1",
        "keys.txt:4: `rpm` is given twice",
        "keys.txt:6: the key is shorter than 8 characters",
        "keys.txt:6: only `rpm=N`, `tpm=N` and `priority=P` may follow the key",
        "keys.txt:7: the name before `:` must be letters, digits, `.`, `_` or `-` "
        "(a key holding `:` needs a name in front of it)",
        "keys.txt:9: the same key is already listed (keys.txt:8)",
        "keys.txt:10: the name `erin` is already used (keys.txt:9)",
        "keys.txt:11: the key may hold only printable ASCII characters",
    ]
    message = str(info.value)
    for secret in (ALICE, BATCH, PLAIN, "abc12"):
        assert secret not in message


def test_a_key_may_be_allowed_a_priority_class_and_is_normal_without_one() -> None:
    text = f"vip:{ALICE} priority=HIGH\nbatch:{BATCH} priority=low rpm=5\n{PLAIN}\n"
    assert [k.max_priority for k in keys_of(parse_key_file(text, "k"))] == [
        Priority.HIGH,
        Priority.LOW,
        Priority.NORMAL,
    ]
    (secret,) = parse_secret_files({"vip": f"{ALICE} priority=high"}, "/k")
    assert secret.key.max_priority is Priority.HIGH


def test_a_bad_priority_is_reported_with_the_valid_ones() -> None:
    with pytest.raises(KeyFileError) as info:
        parse_key_file(f"a:{ALICE} priority=urgent\nb:{BATCH} priority=low priority=low\n", "k")
    assert info.value.problems == [
        "k:1: `priority` must be one of high, normal, low",
        "k:2: `priority` is given twice",
    ]


@pytest.mark.parametrize(
    ("allowed", "asked", "served"),
    [
        (Priority.NORMAL, Priority.HIGH, Priority.NORMAL),  # asking for more gets the key's best
        (Priority.NORMAL, Priority.LOW, Priority.LOW),  # asking for less is always fine
        (Priority.LOW, Priority.NORMAL, Priority.LOW),
        (Priority.HIGH, Priority.HIGH, Priority.HIGH),
    ],
)
def test_a_request_gets_at_best_its_keys_priority(
    allowed: Priority, asked: Priority, served: Priority
) -> None:
    assert ApiKey("k", max_priority=allowed).priority(asked) is served


def test_an_empty_key_file_is_valid_and_holds_no_key() -> None:
    assert parse_key_file("# nothing yet\n\n", "k") == []


# -- the Secret directory --------------------------------------------------------------------


def test_secret_files_are_name_to_key_with_optional_limits() -> None:
    entries = parse_secret_files({"alice": f"{ALICE}\n", "batch": f"{BATCH} tpm=5000\n"}, "/keys")
    assert keys_of(entries) == [ApiKey("alice"), ApiKey("batch", None, 5000)]


def test_secret_file_problems_name_the_file() -> None:
    with pytest.raises(KeyFileError) as info:
        parse_secret_files({"empty": "\n", "two": f"{ALICE}\n{BATCH}\n", "short": "abc", "x": ALICE}, "/k")
    assert info.value.problems == [
        "/k/empty: the file must hold exactly one key, found 0 lines",
        "/k/short: the key is shorter than 8 characters",
        "/k/two: the file must hold exactly one key, found 2 lines",
    ]


def kubelet_secret(root: Path, version: str, data: dict[str, str]) -> None:
    """The layout the kubelet writes: files in a timestamped folder, `..data` linking to it, and a
    link per key through `..data`; an update swaps `..data`."""
    folder = root / f"..{version}"
    folder.mkdir()
    for name, value in data.items():
        (folder / name).write_text(value)
        link = root / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)
    tmp = root / "..data_tmp"
    tmp.symlink_to(folder.name)
    tmp.replace(root / "..data")


def test_a_mounted_secret_is_detected_and_read(tmp_path: Path) -> None:
    kubelet_secret(tmp_path, "2024_01", {"alice": ALICE, "batch": f"{BATCH} rpm=10"})
    assert keys_of(load_keys(tmp_path)) == [ApiKey("alice"), ApiKey("batch", 10)]


def test_an_unreadable_source_is_one_clear_problem_in_words(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as info:
        load_keys(tmp_path / "missing")
    assert info.value.problems == [
        f"{tmp_path / 'missing'}: cannot read the API keys: No such file or directory"
    ]
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    with pytest.raises(KeyFileError) as info:
        load_keys(tmp_path / "bin")
    assert info.value.problems == [
        f"{tmp_path / 'bin'}: cannot read the API keys: the file is not UTF-8 text"
    ]


# -- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("abc", None),
        # Keys are printable ASCII; a byte that was not UTF-8 arrives as a lone surrogate.
        ("Bearer sk-abcdef\udcff", None),
        ("Bearer sk-abcdéf", None),
        ("Bearer sk-abc\x01def", None),
    ],
)
def test_bearer_token(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


def test_match_key_compares_every_digest_in_constant_time() -> None:
    entries = parse_key_file(KEY_FILE, "k")
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    assert match_key(ALICE, entries, spy) == ApiKey("alice", 600, 200000)
    # The first entry matched, and every other was still compared.
    assert [b for _, b in calls] == [e.digest for e in entries]
    assert match_key("sk-unknown-key", entries, spy) is None
    assert inspect.signature(match_key).parameters["compare"].default is hmac.compare_digest


def test_without_a_source_authentication_is_off() -> None:
    store = KeyStore()
    assert not store.enabled
    assert store.authenticate(None) is None
    assert store.authenticate("Bearer anything") is None


def test_a_known_key_is_accepted_with_default_limits_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(KEY_FILE)
    store = KeyStore(path, default_requests_per_minute=60, default_tokens_per_minute=1000)
    assert store.authenticate(f"Bearer {ALICE}") == ApiKey("alice", 600, 200000)
    assert store.authenticate(f"Bearer {BATCH}") == ApiKey("batch", 60, 2000000)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "No API key given: send it as `Authorization: Bearer <key>`."),
        ("Token abc", "The `Authorization` header must be `Bearer <key>`."),
        ("Bearer sk-not-a-key-at-all", "The API key is not valid."),
        (f"Bearer {ALICE}x", "The API key is not valid."),
    ],
)
def test_a_missing_or_wrong_key_is_a_401_invalid_api_key(
    tmp_path: Path, header: str | None, message: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(KEY_FILE)
    with pytest.raises(Rejection) as info:
        KeyStore(path).authenticate(header)
    rejection = info.value
    assert rejection.status == 401
    assert rejection.headers == {"WWW-Authenticate": "Bearer"}
    assert rejection.body()["error"] == {
        "message": message,
        "type": "AuthenticationError",
        "param": None,
        "code": "invalid_api_key",
    }
    assert ALICE not in rejection.message


def test_a_configured_but_empty_source_refuses_everyone(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# no keys yet\n")
    store = KeyStore(path)
    assert store.enabled
    with pytest.raises(Rejection):
        store.authenticate(f"Bearer {ALICE}")


def test_a_broken_source_at_start_is_fatal(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("alice:short\n")
    with pytest.raises(KeyFileError, match=r"keys:1: the key is shorter"):
        KeyStore(path)


# -- reload ----------------------------------------------------------------------------------


def test_a_changed_key_file_is_reloaded_and_an_unchanged_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice:{ALICE}\n")
    store = KeyStore(path)
    assert not store.reload_if_changed()
    path.write_text(f"alice:{BATCH}\n")
    bump(path)
    assert store.reload_if_changed()
    assert store.authenticate(f"Bearer {BATCH}") == ApiKey("alice")
    with pytest.raises(Rejection):
        store.authenticate(f"Bearer {ALICE}")
    assert not store.reload_if_changed()


def test_a_broken_reload_keeps_the_keys_in_use_and_logs_no_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice:{ALICE}\n")
    store = KeyStore(path)
    path.write_text(f"alice:{BATCH}\nbob:{PLAIN} rpm=fast\n")
    bump(path)
    with caplog.at_level(logging.INFO, logger="phalanx.router.auth"):
        assert not store.reload_if_changed()
    assert store.authenticate(f"Bearer {ALICE}") == ApiKey("alice")
    assert store.last_error == f"{path}:2: `rpm` must be a whole number of at least 1"
    assert f"{path}:2:" in caplog.text
    for secret in (ALICE, BATCH, PLAIN):
        assert secret not in caplog.text
    # Not read again until it changes; fixed, it is.
    assert not store.reload_if_changed()
    path.write_text(f"alice:{BATCH}\n")
    bump(path)
    assert store.reload_if_changed()
    assert store.last_error is None
    assert store.authenticate(f"Bearer {BATCH}") == ApiKey("alice")


def test_a_secret_update_is_picked_up(tmp_path: Path) -> None:
    kubelet_secret(tmp_path, "v1", {"alice": ALICE})
    store = KeyStore(tmp_path)
    assert store.keys() == (ApiKey("alice"),)
    assert not store.reload_if_changed()
    kubelet_secret(tmp_path, "v2", {"alice": BATCH, "bob": PLAIN})
    assert store.reload_if_changed()
    assert store.keys() == (ApiKey("alice"), ApiKey("bob"))
    assert store.authenticate(f"Bearer {BATCH}") == ApiKey("alice")


async def test_poll_reloads_until_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"alice:{ALICE}\n")
    store = KeyStore(path)
    reloads: list[tuple[ApiKey, ...]] = []
    task = asyncio.create_task(store.poll(interval_s=0.005, on_reload=reloads.append))
    path.write_text(f"bob:{BATCH}\n")
    bump(path)
    for _ in range(200):
        if store.keys() == (ApiKey("bob"),):
            break
        await asyncio.sleep(0.005)
    assert store.keys() == (ApiKey("bob"),)
    assert reloads == [(ApiKey("bob"),)]  # once: nothing changed after
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
