"""Engine flags spelled so that Phalanx reads them as the engine does: pure checks.

Phalanx reads a few flags from a role's engine command (the PD side and bootstrap port, the served
model names). A spelling the engine takes but Phalanx would miss (an abbreviation) makes the labels
lie; one Phalanx takes but the engine refuses (SGLang with underscores, a hyphenated dotted key in
vLLM) stops the pod. Both are errors naming the token and the spelling to write instead.

Abbreviations are refused rather than read: whether a prefix is unique depends on every flag of the
engine version in the image, which Phalanx does not know, and a newer version can make it ambiguous.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from phalanx.api.argv import abbreviations, container_commands, option_name, strings, underscored_options
from phalanx.api.disaggregation import (
    KV_TRANSFER_FLAG,
    SGLANG_BOOTSTRAP_FLAG,
    SGLANG_MODE_FLAG,
    command_engine,
)
from phalanx.api.errors import FieldError, Path
from phalanx.api.modelserving import ModelServing

SERVED_MODEL_NAME_FLAG = "--served-model-name"
SGLANG_BACKEND_FLAG = "--disaggregation-transfer-backend"
# The flags Phalanx reads from an engine command (api.disaggregation, router.pods) or wires a pod by.
READ_FLAGS = (
    KV_TRANSFER_FLAG,
    SGLANG_MODE_FLAG,
    SGLANG_BOOTSTRAP_FLAG,
    SGLANG_BACKEND_FLAG,
    SERVED_MODEL_NAME_FLAG,
    "--port",
    "--host",
)
_PD_FLAG_WORDS = ("--kv-", "--disaggregation-")
_TEMPLATE: Path = ("spec", "template")


def engine_flag_problems(ms: ModelServing) -> list[FieldError]:
    """Every engine command of every pod template: abbreviated read flags and refused spellings."""
    problems: list[FieldError] = []
    for index, role in enumerate(ms.spec.template.roles):
        templates = [("entryTemplate", role.entry_template)]
        if role.worker_template is not None:
            templates.append(("workerTemplate", role.worker_template))
        for key, template in templates:
            path: Path = (*_TEMPLATE, "roles", index, key, "spec")
            problems.extend(pod_spec_flag_problems(template.spec, path))
    return problems


def pod_spec_flag_problems(spec: Mapping[str, Any], path: Path) -> list[FieldError]:
    containers = spec.get("containers")
    problems: list[FieldError] = []
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if isinstance(container, Mapping):
            problems.extend(_container(container, (*path, "containers", index)))
    return problems


def _container(container: Mapping[str, Any], path: Path) -> Iterator[FieldError]:
    for command in container_commands(container):
        engine = command_engine(command)
        if engine is None and not _carries_pd_flags(command):
            continue
        found = [
            *_abbreviated(command),
            *(_underscored(command) if engine == "sglang" else []),
            *_dotted(command),
        ]
        for token, message, fix in found:
            yield FieldError(_token_path(container, path, token), message, value=token, fix=fix)


# (token, message, fix) of one spelling problem in a command.
Found = tuple[str, str, str]


def _abbreviated(command: Sequence[str]) -> Iterator[Found]:
    for token, full in abbreviations(command, READ_FLAGS):
        spelled = " or ".join(full)
        message = (
            f"abbreviates {spelled}: the engine would take it as that flag, but Phalanx reads only the full "
            "spelling, so the pod's labels and wiring would not match what the engine runs"
        )
        yield token, message, f"write the flag in full: {spelled}"


def _underscored(command: Sequence[str]) -> Iterator[Found]:
    for token in underscored_options(command):
        message = "is spelled with underscores, which SGLang's parser refuses (unrecognized arguments)"
        yield token, message, f"write {token.partition('=')[0].replace('_', '-')}"


def _dotted(command: Sequence[str]) -> Iterator[Found]:
    """vLLM takes the key of `--kv-transfer-config.KEY` verbatim: `kv-role` is not the field kv_role."""
    for token in command:
        head, dot, keys = (option_name(token) or "").partition(".")
        key = keys.partition(".")[0]  # deeper keys are the connector's own (extra config), any spelling
        if head == KV_TRANSFER_FLAG and dot and "-" in key:
            message = (
                f"names the {KV_TRANSFER_FLAG} field {key!r}, which vLLM refuses (its fields use underscores)"
            )
            yield token, message, f"write {head}.{key.replace('-', '_')}"


def _carries_pd_flags(command: Sequence[str]) -> bool:
    """An engine started by the image's entrypoint (args only) is known by its PD flags, as
    api.disaggregation reads it; abbreviated ones count, down to their first word."""
    return any((option_name(token) or "").startswith(_PD_FLAG_WORDS) for token in command)


def _token_path(container: Mapping[str, Any], path: Path, token: str) -> Path:
    """The list item that is the token, else the one whose shell script holds it."""
    for exact in (True, False):
        for key in ("args", "command"):
            items = strings(container.get(key))
            for index, item in enumerate(items):
                if item == token if exact else token in item:
                    return (*path, key, index)
    return (*path, "command")
