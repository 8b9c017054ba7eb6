"""API keys for clients of the router: loaded from a key file or a mounted Kubernetes Secret.

Only SHA-256 digests of the keys are kept; a presented key is hashed and compared with every stored
digest through `hmac.compare_digest`, so neither the answer nor its timing depends on how much of
a key matched. No key, and no part of one, is ever logged or put in an error message.

Key file (one key per line; `#` starts a comment at the start of a line or after a space):

    alice:sk-alice-7f3a9c2e rpm=600 tpm=200000 priority=high
    batch:sk-batch-0d41e8b5 tpm=2000000 priority=low
    sk-anonymous-5be2c7a1            # no name: it is called key-<first 8 hex of its SHA-256>

Secret directory (a Secret mounted as a volume): every file is one key, the file name is the key's
name, and the content is the key optionally followed by `rpm=N`, `tpm=N` and `priority=P`.

`priority` is the best `x-priority` class the key's requests may ask for (`normal` when not
given): a request asking for more is served at the key's class, so only keys given `high` can
put their requests ahead of others.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from phalanx.router.admission import Priority
from phalanx.router.rejection import Rejection

logger = logging.getLogger("phalanx.router.auth")

MIN_KEY_LENGTH = 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_LIMITS = {"rpm": "requests_per_minute", "tpm": "tokens_per_minute"}
_PRIORITIES = {p.label: p for p in Priority}


@dataclass(frozen=True)
class ApiKey:
    """Who a request is from, as far as limits and metrics care. Never holds the key itself."""

    name: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    # The best `x-priority` class its requests get; asking for more is asking for this.
    max_priority: Priority = Priority.NORMAL

    def priority(self, asked: Priority) -> Priority:
        """The class a request of this key that asks for `asked` is queued in."""
        return max(asked, self.max_priority)  # a lower rank is a better class


@dataclass(frozen=True)
class KeyEntry:
    key: ApiKey
    digest: bytes


class KeyFileError(ValueError):
    """Every problem found in a key source, each `where: what`."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


# -- parsing ---------------------------------------------------------------------------------


def _strip_comment(line: str) -> list[str]:
    tokens = []
    for token in line.split():
        if token.startswith("#"):
            break
        tokens.append(token)
    return tokens


def _entry(name: str | None, key: str, options: Sequence[str], where: str) -> KeyEntry | list[str]:
    problems = []
    if len(key) < MIN_KEY_LENGTH:
        problems.append(f"{where}: the key is shorter than {MIN_KEY_LENGTH} characters")
    elif not (key.isascii() and key.isprintable()):
        problems.append(f"{where}: the key may hold only printable ASCII characters")
    limits: dict[str, int] = {}
    priority: Priority | None = None
    for option in options:
        label, sep, value = option.partition("=")
        if not sep or (label not in _LIMITS and label != "priority"):
            # The token is not echoed: a key split by a stray space would leak its second half.
            problems.append(f"{where}: only `rpm=N`, `tpm=N` and `priority=P` may follow the key")
        elif (_LIMITS.get(label) in limits) or (label == "priority" and priority is not None):
            problems.append(f"{where}: `{label}` is given twice")
        elif label == "priority":
            priority = _PRIORITIES.get(value.lower())
            if priority is None:
                problems.append(f"{where}: `priority` must be one of {', '.join(_PRIORITIES)}")
        elif not value.isdigit() or int(value) < 1:
            problems.append(f"{where}: `{label}` must be a whole number of at least 1")
        else:
            limits[_LIMITS[label]] = int(value)
    if problems:
        return problems
    hashed = digest(key)
    key_name = name or f"key-{hashed.hex()[:8]}"
    return KeyEntry(
        ApiKey(key_name, **limits, max_priority=Priority.NORMAL if priority is None else priority), hashed
    )


def _check_unique(found: Sequence[tuple[int, str, KeyEntry]]) -> list[tuple[int, str]]:
    problems = []
    names: dict[str, str] = {}
    digests: dict[bytes, str] = {}
    for order, where, entry in found:
        if entry.key.name in names:
            problems.append(
                (order, f"{where}: the name `{entry.key.name}` is already used ({names[entry.key.name]})")
            )
        else:
            names[entry.key.name] = where
        if entry.digest in digests:
            problems.append((order, f"{where}: the same key is already listed ({digests[entry.digest]})"))
        else:
            digests[entry.digest] = where
    return problems


# One key as written: its place in the source (for ordering problems), where that is (for
# messages), its name (None: derived from the key) and its tokens, the key first.
_Source = tuple[int, str, str | None, list[str]]


def _build(keys: Sequence[_Source], problems: list[tuple[int, str]]) -> list[KeyEntry]:
    found: list[tuple[int, str, KeyEntry]] = []
    for order, where, name, (key, *options) in keys:
        result = _entry(name, key, options, where)
        if isinstance(result, list):
            problems.extend((order, text) for text in result)
        else:
            found.append((order, where, result))
    problems.extend(_check_unique(found))
    if problems:
        # In the order of the source (stable: a line's own problems before its duplicates).
        raise KeyFileError([text for _, text in sorted(problems, key=lambda p: p[0])])
    return [entry for _, _, entry in found]


def parse_key_file(text: str, source: str) -> list[KeyEntry]:
    """`name:key [rpm=N] [tpm=N] [priority=P]` or `key [...]` per line.

    Raises `KeyFileError` naming each bad line."""
    problems: list[tuple[int, str]] = []
    keys: list[_Source] = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = _strip_comment(line)
        if not tokens:
            continue
        where = f"{source}:{number}"
        name: str | None = None
        if ":" in tokens[0]:
            name, _, tokens[0] = tokens[0].partition(":")
            if not _NAME.fullmatch(name):
                # Not echoed either: what precedes the colon may be part of a key.
                message = (
                    f"{where}: the name before `:` must be letters, digits, `.`, `_` or `-` "
                    "(a key holding `:` needs a name in front of it)"
                )
                problems.append((number, message))
                continue
        keys.append((number, where, name, tokens))
    return _build(keys, problems)


def parse_secret_files(files: Mapping[str, str], source: str) -> list[KeyEntry]:
    """A mounted Secret: file name → content `key [rpm=N] [tpm=N] [priority=P]`. Raises `KeyFileError`."""
    problems: list[tuple[int, str]] = []
    keys: list[_Source] = []
    for order, (name, content) in enumerate(sorted(files.items())):
        where = f"{source}/{name}"
        lines = [tokens for tokens in map(_strip_comment, content.splitlines()) if tokens]
        if not _NAME.fullmatch(name):
            problems.append((order, f"{where}: a key name must be letters, digits, `.`, `_` or `-`"))
        elif len(lines) != 1:
            problems.append((order, f"{where}: the file must hold exactly one key, found {len(lines)} lines"))
        else:
            keys.append((order, where, name, lines[0]))
    return _build(keys, problems)


def load_keys(path: Path) -> list[KeyEntry]:
    """A directory is read as a mounted Secret, anything else as a key file."""
    try:
        if not path.is_dir():
            return parse_key_file(path.read_text(encoding="utf-8"), str(path))
        files = {}
        for child in path.iterdir():
            # `..data` and the timestamped folders are the kubelet's atomic-update machinery.
            if not child.name.startswith(".") and child.is_file():
                files[child.name] = child.read_text(encoding="utf-8")
        return parse_secret_files(files, str(path))
    except OSError as exc:  # the reason in words (`No such file or directory`), not a class name
        reason = exc.strerror or type(exc).__name__
        raise KeyFileError([f"{path}: cannot read the API keys: {reason}"]) from None
    except UnicodeDecodeError:
        raise KeyFileError([f"{path}: cannot read the API keys: the file is not UTF-8 text"]) from None


def fingerprint(path: Path) -> tuple[object, ...] | None:
    """Changes whenever the keys at `path` may have: a file's identity, size and mtime, or for a
    Secret directory those of every key file and the target of its `..data` link."""
    try:
        if not path.is_dir():
            st = path.stat()
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        items: list[object] = []
        for child in sorted(path.iterdir()):
            if child.name == "..data" and child.is_symlink():
                items.append(str(child.readlink()))
            elif not child.name.startswith("."):
                st = child.stat()
                items.append((child.name, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(items)
    except OSError:
        return None


# -- requests --------------------------------------------------------------------------------


def bearer_token(authorization: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>` (scheme case-insensitive), else None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    # Keys are printable ASCII (checked when loaded); anything else is malformed, and bytes a
    # client sent that are not UTF-8 arrive here as surrogates that cannot even be hashed.
    if not token or not (token.isascii() and token.isprintable()):
        return None
    return token


def match_key(
    presented: str,
    entries: Sequence[KeyEntry],
    compare: Callable[[bytes, bytes], bool] = hmac.compare_digest,
) -> ApiKey | None:
    """The key whose digest equals the presented key's. Every entry is compared, match or not,
    so the time taken does not say where in the list (or whether) a key matched."""
    hashed = digest(presented)
    found = None
    for entry in entries:
        if compare(hashed, entry.digest) and found is None:
            found = entry.key
    return found


def unauthorized(message: str) -> Rejection:
    return Rejection(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


class KeyStore:
    """The configured keys, reloaded when their file or Secret changes.

    With no `path`, authentication is off and `authenticate` returns None for every request. With
    a path, it is on even when the source holds no key (every request is refused): an emptied
    Secret must not open the router to everyone.
    """

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        default_requests_per_minute: int | None = None,
        default_tokens_per_minute: int | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._default_rpm = default_requests_per_minute
        self._default_tpm = default_tokens_per_minute
        self._entries: tuple[KeyEntry, ...] = ()
        self._fingerprint: tuple[object, ...] | None = None
        self.last_error: str | None = None
        if self.path is not None:
            # A broken source at start is fatal (KeyFileError); on reload the old keys stay.
            before = fingerprint(self.path)
            self._install(load_keys(self.path))
            self._fingerprint = before

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def keys(self) -> tuple[ApiKey, ...]:
        return tuple(entry.key for entry in self._entries)

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        """The key a request's `Authorization` header names; None when authentication is off.
        Raises `Rejection` 401 (`invalid_api_key`) for a missing, malformed or unknown key."""
        if not self.enabled:
            return None
        if not authorization:
            raise unauthorized("No API key given: send it as `Authorization: Bearer <key>`.")
        token = bearer_token(authorization)
        if token is None:
            raise unauthorized("The `Authorization` header must be `Bearer <key>`.")
        key = match_key(token, self._entries)
        if key is None:
            raise unauthorized("The API key is not valid.")
        return key

    def reload(self) -> bool:
        """Read the source again now. On a problem the keys in use stay, the problems are logged
        (never the keys) and kept in `last_error`; returns whether new keys were installed."""
        if self.path is None:
            return False
        # Taken before reading: a change made while it is read (a Secret update in progress)
        # differs from it, so the next poll reads again.
        self._fingerprint = fingerprint(self.path)
        try:
            entries = load_keys(self.path)
        except KeyFileError as exc:
            self.last_error = str(exc)
            logger.error("keeping the API keys in use; %s has problems:\n%s", self.path, exc)
            return False
        self._install(entries)
        return True

    def reload_if_changed(self) -> bool:
        if self.path is None or fingerprint(self.path) == self._fingerprint:
            return False
        return self.reload()

    async def poll(
        self, interval_s: float = 5.0, on_reload: Callable[[tuple[ApiKey, ...]], None] | None = None
    ) -> None:
        """Reload on change until cancelled; the caller owns (and cancels) the task running it.
        `on_reload` gets the keys in use after each reload that installed new ones."""
        while True:
            await asyncio.sleep(interval_s)
            if self.reload_if_changed() and on_reload is not None:
                on_reload(self.keys())

    def _install(self, entries: Iterable[KeyEntry]) -> None:
        self._entries = tuple(
            KeyEntry(
                replace(
                    e.key,
                    requests_per_minute=e.key.requests_per_minute or self._default_rpm,
                    tokens_per_minute=e.key.tokens_per_minute or self._default_tpm,
                ),
                e.digest,
            )
            for e in entries
        )
        self.last_error = None
        if self._entries:
            logger.info("%d API keys in use from %s", len(self._entries), self.path)
        else:
            logger.warning("no API keys in %s: every request is refused with 401", self.path)
