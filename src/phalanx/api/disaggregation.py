"""A role's prefill/decode (PD) kind, as declared or as its engine's flags say: pure functions.

A role's kind is `disaggregation.kind` when set, else what the entry container's engine flags say:
vLLM's `--kv-transfer-config` `kv_role` (`kv_producer` prefill, `kv_consumer` decode; `kv_both`
says nothing), SGLang's `--disaggregation-mode prefill|decode`. Never the role's name alone: a role
named `prefill` whose engine was not told to hand its KV cache over would answer every request
itself, so pairing it with a decode pod would break requests.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from phalanx.api import labels as L
from phalanx.api.argv import container_commands, flag_values
from phalanx.api.modelserving import (
    ModelServing,
    PdKind,
    PdPairing,
    PdProtocol,
    PodTemplate,
    Role,
    RoleDisaggregation,
)

Engine = Literal["vllm", "sglang", "sim"]

DEFAULT_BOOTSTRAP_PORT = 8998  # SGLang's --disaggregation-bootstrap-port default
DEFAULT_PROTOCOL: PdProtocol = "vllm"  # when neither declared nor readable from the engine flags

KV_TRANSFER_FLAG = "--kv-transfer-config"
KV_ROLE_FLAG = "--kv-transfer-config.kv-role"  # vLLM's dotted form of one JSON key
SGLANG_MODE_FLAG = "--disaggregation-mode"
SGLANG_BOOTSTRAP_FLAG = "--disaggregation-bootstrap-port"
# The pod labels and annotations that say a pod is PD; only Phalanx writes them.
PD_POD_LABELS = frozenset({L.PD_ROLE, L.PD_PAIR_KEY})
PD_POD_ANNOTATIONS = frozenset({L.PD_PROTOCOL_ANNOTATION, L.PD_BOOTSTRAP_PORT_ANNOTATION})
PD_POD_KEYS = PD_POD_LABELS | PD_POD_ANNOTATIONS
_KV_ROLES: dict[str, PdKind | None] = {"kv_producer": "prefill", "kv_consumer": "decode", "kv_both": None}
_SGLANG_MODES: dict[str, PdKind | None] = {"prefill": "prefill", "decode": "decode", "null": None}
_ENGINE_PROTOCOL: dict[Engine, PdProtocol | None] = {"vllm": "vllm", "sglang": "sglang", "sim": None}


@dataclass(frozen=True)
class RolePd:
    """A role's side in PD disaggregation and how the router talks to its pods."""

    kind: PdKind
    protocol: PdProtocol
    bootstrap_port: int | None = None  # SGLang prefill roles only


@dataclass(frozen=True)
class EngineFlags:
    """What the entry container's engine command says about PD.

    `flag_key` is where the PD flags were found (`containers[i].args` or `.command`), for messages.
    Raw values are kept as written so validation can show them; `problem` says why a flag present
    could not be read (then `kind` is None).
    """

    container: int | None = None
    flag_key: str = "args"
    engine: Engine | None = None
    flavour: PdProtocol | None = None  # vllm: --kv-transfer-config given; sglang: --disaggregation-mode
    kv_role: str | None = None
    mode: str | None = None
    bootstrap_port: str | None = None
    problem: str | None = None
    engine_refuses: bool = False  # the problem would stop the engine, not only this reading

    @property
    def kind(self) -> PdKind | None:
        if self.flavour == "vllm" and self.kv_role is not None:
            return _KV_ROLES.get(self.kv_role)
        if self.flavour == "sglang" and self.mode is not None:
            return _SGLANG_MODES.get(self.mode)
        return None

    @property
    def bootstrap_port_number(self) -> int | None:
        port = self.bootstrap_port
        return int(port) if port is not None and port.isdigit() and 0 < int(port) < 65536 else None


def command_engine(command: Sequence[str]) -> Engine | None:
    """Which engine a command starts: `vllm serve`, `python -m vllm.entrypoints...`, `python -m
    sglang.launch_server`, `phalanx sim`; None for anything else."""
    for index, token in enumerate(command):
        following = command[index + 1] if index + 1 < len(command) else ""
        base = posixpath.basename(token)
        if token.startswith("vllm.entrypoints") or (base == "vllm" and following == "serve"):
            return "vllm"
        if token.startswith("sglang.launch_server") or (base == "sglang" and following == "serve"):
            return "sglang"
        if token == "phalanx.sim" or (base == "phalanx" and following == "sim"):
            return "sim"
    return None


def _single(values: list[str] | None) -> str | None:
    return None if values is None else " ".join(values)


def _read_command(command: Sequence[str]) -> EngineFlags | None:
    """The PD flags of one command; None when it neither starts an engine nor carries PD flags."""
    engine = command_engine(command)
    config = _single(flag_values(command, KV_TRANSFER_FLAG))
    dotted_role = _single(flag_values(command, KV_ROLE_FLAG))
    mode = _single(flag_values(command, SGLANG_MODE_FLAG))
    port = _single(flag_values(command, SGLANG_BOOTSTRAP_FLAG))
    if engine is None and config is None and dotted_role is None and mode is None:
        return None
    kv_role, problem, refuses = None, None, False
    if config is not None:
        kv_role, problem, refuses = _kv_role(config)
    if dotted_role is not None:
        kv_role = dotted_role  # the dotted key is applied over the JSON
    flavour: PdProtocol | None = None
    if config is not None or dotted_role is not None:
        flavour = "vllm"
    elif mode is not None:
        flavour = "sglang"
    return EngineFlags(
        engine=engine,
        flavour=flavour,
        kv_role=kv_role,
        mode=mode,
        bootstrap_port=port,
        problem=problem,
        engine_refuses=refuses,
    )


def _kv_role(config: str) -> tuple[str | None, str | None, bool]:
    """(kv_role, problem, whether the engine refuses it) of a --kv-transfer-config value."""
    if "$" in config:
        return None, "uses shell variables, so its kv_role is not known before the pod runs", False
    try:
        parsed = json.loads(config)
    except ValueError:
        return None, "is not JSON, so the engine would refuse it", True
    if not isinstance(parsed, dict):
        return None, "is not a JSON object, so the engine would refuse it", True
    kv_role = parsed.get("kv_role")
    return (kv_role if isinstance(kv_role, str) else None), None, False


def _flag_key(container: Mapping[str, Any]) -> str:
    flags = (KV_TRANSFER_FLAG, SGLANG_MODE_FLAG, "--kv_transfer_config", "--disaggregation_mode")
    args = container.get("args")
    if isinstance(args, list) and any(isinstance(a, str) and f in a for a in args for f in flags):
        return "args"
    return "command"


def engine_flags(template: PodTemplate) -> EngineFlags:
    """The PD flags of a pod template's engine (see `pod_spec_engine_flags`)."""
    return pod_spec_engine_flags(template.spec)


def pod_spec_engine_flags(spec: Mapping[str, Any]) -> EngineFlags:
    """The PD flags of a PodSpec's engine: its first container that starts an engine or carries PD
    flags, the last such command in it (a script may set up before it starts the engine)."""
    containers = spec.get("containers")
    for index, container in enumerate(containers if isinstance(containers, list) else []):
        if not isinstance(container, Mapping):
            continue
        found = [flags for flags in map(_read_command, container_commands(container)) if flags]
        if found:
            return replace(found[-1], container=index, flag_key=_flag_key(container))
    return EngineFlags()


def role_pd(role: Role) -> RolePd | None:
    """The role's PD kind, protocol and bootstrap port; None when it serves aggregated."""
    return resolve(role.disaggregation, engine_flags(role.entry_template))


def resolve(declared: RoleDisaggregation | None, flags: EngineFlags) -> RolePd | None:
    """The declared fields win; what is not declared comes from the engine flags."""
    declared = declared or RoleDisaggregation()
    kind = declared.kind or flags.kind
    if kind is None:
        return None
    protocol = (
        declared.protocol
        or flags.flavour
        or (_ENGINE_PROTOCOL[flags.engine] if flags.engine else None)
        or DEFAULT_PROTOCOL
    )
    port = None
    if protocol == "sglang" and kind == "prefill":
        port = declared.bootstrap_port or flags.bootstrap_port_number or DEFAULT_BOOTSTRAP_PORT
    return RolePd(kind=kind, protocol=protocol, bootstrap_port=port)


def pairing(ms: ModelServing) -> PdPairing:
    template = ms.spec.template.disaggregation
    return template.pairing if template else "ModelServing"


def pair_key(ms: ModelServing, group_index: int) -> str:
    """The `pd-pair-key` label value: prefill and decode entry pods pair only when theirs are equal."""
    return ms.name if pairing(ms) == "ModelServing" else f"{ms.name}-{group_index}"
