"""Container environment and command lines as a kubelet builds them: pure functions over plain data.

Kubernetes expands `$(VAR)` in env values (from variables defined earlier in the list), command and
args (from the whole container env); `$$` escapes a dollar sign and unknown references stay as
written. Locally there is no DNS, so values naming a Service are rewritten to a pod IP first.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

HOST_IP = "127.0.0.1"  # the "node" every local pod runs on
# fieldRef paths a local pod can answer, besides one label or annotation.
_FIELD_PATHS = ("metadata.name", "metadata.namespace", "status.podIP", "status.hostIP")
_KEYED_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


class ConfigError(ValueError):
    """A container cannot run locally; the message says why in words a user can act on."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` -> `$`, undefined `$(VAR)` kept verbatim."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char != "$" or i + 1 >= n:
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : end]
            out.append(variables[name] if name in variables else text[i : end + 1])
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def container_env(
    container: Mapping[str, Any],
    *,
    pod_name: str,
    namespace: str,
    pod_ip: str,
    gpu_ids: tuple[int, ...],
    resolve: Callable[[str], str] = lambda value: value,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables a container sees (on top of the runtime's own environment), in Kubernetes order.

    POD_NAME/POD_NAMESPACE/POD_IP come first so the spec can refer to or override them;
    CUDA_VISIBLE_DEVICES comes last so a pod only ever sees the GPUs it was given ("" for none).
    """
    name = container.get("name", "?")
    env: dict[str, str] = {"POD_NAME": pod_name, "POD_NAMESPACE": namespace, "POD_IP": pod_ip}
    fields = {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "status.podIP": pod_ip,
        "status.hostIP": HOST_IP,
    }
    keyed = {"labels": labels or {}, "annotations": annotations or {}}
    for item in container.get("env") or []:
        key = item.get("name")
        if not key:
            raise ConfigError(f"container {name}: an env entry has no name")
        if "valueFrom" in item:
            source = item.get("valueFrom") or {}
            path = (source.get("fieldRef") or {}).get("fieldPath")
            one = _KEYED_FIELD.match(path or "")
            if one:  # a missing label or annotation reads as "", as on a kubelet
                env[key] = keyed[one.group(1)].get(one.group(2), "")
            elif path in fields:
                env[key] = fields[path]
            else:
                what = path or next(iter(source), "valueFrom")
                raise ConfigError(
                    f"container {name}: env {key} comes from {what}, which the local runtime cannot "
                    f"provide (only fieldRef {', '.join(_FIELD_PATHS)}, metadata.labels['<key>'] or "
                    "metadata.annotations['<key>']); set a plain value instead"
                )
        else:
            env[key] = resolve(expand(str(item.get("value", "")), env))
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpu_ids)
    return env


def command_line(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded; `phalanx` runs the current install's interpreter."""
    name = container.get("name", "?")
    command = [str(part) for part in container.get("command") or []]
    if not command:
        image = container.get("image", "")
        raise ConfigError(
            f"container {name} has no command; the local runtime ignores images (here {image or 'none'}) "
            "and cannot run an image's entrypoint, so give `command` explicitly"
        )
    argv = [expand(part, env) for part in [*command, *(str(a) for a in container.get("args") or [])]]
    if argv[0] == "phalanx":
        argv = [sys.executable, "-m", "phalanx", *argv[1:]]
    return argv
