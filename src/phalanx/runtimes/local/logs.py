"""Where pods' logs live: `<state_dir>/logs/<pod>/<container>.log`, names checked, links never followed.

Names come from callers (`phalanx logs` over the control socket) as well as from pod specs, and
are joined into paths; so a name must be a name, as Kubernetes requires (namespace and container:
DNS-1123 label; pod: DNS-1123 subdomain), and the resolved path must stay under `logs/`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from phalanx.api.names import is_dns1123_label, is_dns1123_subdomain
from phalanx.runtimes.local.statedir import create_file, ensure_private_dir

LOGS = "logs"
_LABEL = "a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending alphanumeric"
_SUBDOMAIN = (
    "a DNS-1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', "
    "each dot-separated part starting and ending alphanumeric"
)


class BadLogRequest(ValueError):
    """A log asked for by names that are not names, or at a path outside the state directory."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def name_problems(namespace: str, pod: str, container: str | None) -> list[tuple[str, str]]:
    """Every (field, message) for a name that Kubernetes would refuse; empty when all are fine."""
    problems = []
    if not is_dns1123_label(namespace):
        problems.append(("namespace", f"namespace {namespace!r} must be {_LABEL}"))
    if not is_dns1123_subdomain(pod):
        problems.append(("pod", f"pod {pod!r} must be {_SUBDOMAIN}"))
    if container is not None and not is_dns1123_label(container):
        problems.append(("container", f"container {container!r} must be {_LABEL}"))
    return problems


def check_names(namespace: str, pod: str, container: str | None = None) -> None:
    problems = name_problems(namespace, pod, container)
    if problems:
        raise BadLogRequest(problems[0][0], "; ".join(message for _, message in problems))


def pod_log_dir(state_dir: Path, namespace: str, pod: str) -> Path:
    """A pod's log directory; outside `default` it is `<namespace>_<pod>` (names have no `_`)."""
    check_names(namespace, pod)
    return state_dir / LOGS / (pod if namespace == "default" else f"{namespace}_{pod}")


def log_file(directory: Path, container: str, previous: bool = False) -> Path:
    return directory / (f"{container}.previous.log" if previous else f"{container}.log")


def check_inside(state_dir: Path, path: Path) -> None:
    """The path, links resolved, must be under `<state_dir>/logs`: a linked pod directory leads elsewhere."""
    root = (state_dir / LOGS).resolve()
    if not path.resolve().is_relative_to(root):
        raise BadLogRequest("pod", f"the log of this pod is not under {root}; refusing to read it")


def open_run_log(directory: Path, container: str) -> int:
    """A fresh log for a container's new run (write, append); the run before becomes `.previous`.

    The directory is created 0700 (or must be ours and private) and no link is followed: a link
    planted where a log goes is moved or replaced, never written through.
    """
    ensure_private_dir(directory, inside=True)
    current = log_file(directory, container)
    with contextlib.suppress(FileNotFoundError):
        current.replace(log_file(directory, container, previous=True))
    return create_file(current, append=True)
