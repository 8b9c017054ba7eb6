"""Checks of a ModelServing's prefill/decode roles: declared kinds against the engine flags, both
sides present, one handover protocol, and roles that look disaggregated but are served aggregated.
Every problem at once, each with its field path, the value and the fix."""

from __future__ import annotations

from collections.abc import Iterator

from phalanx.api.disaggregation import (
    DEFAULT_BOOTSTRAP_PORT,
    DEFAULT_PROTOCOL,
    KV_TRANSFER_FLAG,
    SGLANG_MODE_FLAG,
    EngineFlags,
    RolePd,
    engine_flags,
    resolve,
)
from phalanx.api.errors import FieldError, Path, format_path
from phalanx.api.modelserving import ModelServing, Role, RoleDisaggregation

_TEMPLATE: Path = ("spec", "template")
_KV_ROLE_VALUES = ("kv_producer", "kv_consumer", "kv_both")
_SGLANG_MODE_VALUES = ("prefill", "decode", "null")
_ENGINE_FLAGS = {
    "prefill": "--kv-transfer-config with kv_role kv_producer, or --disaggregation-mode prefill",
    "decode": "--kv-transfer-config with kv_role kv_consumer, or --disaggregation-mode decode",
}


def disaggregation_problems(ms: ModelServing) -> list[FieldError]:
    roles = ms.spec.template.roles
    flags = [engine_flags(role.entry_template) for role in roles]
    pds = [resolve(role.disaggregation, f) for role, f in zip(roles, flags, strict=True)]
    serving_is_pd = any(pd is not None for pd in pds)
    # A lone role named `decode` is plainly aggregated; one beside a `prefill` role looks like PD.
    looks_pd = serving_is_pd or {_side_named(r.name) for r in roles if _named_like_a_side(r.name)} == {
        "prefill",
        "decode",
    }
    problems: list[FieldError] = []
    for index, (role, role_flags, pd) in enumerate(zip(roles, flags, pds, strict=True)):
        problems.extend(_role(index, role, role_flags, pd, serving_is_pd, looks_pd))
    problems.extend(_sides(ms, pds))
    return problems


def _flag_path(index: int, flags: EngineFlags) -> Path:
    return (
        *_TEMPLATE,
        "roles",
        index,
        "entryTemplate",
        "spec",
        "containers",
        flags.container or 0,
        flags.flag_key,
    )


def _role(
    index: int, role: Role, flags: EngineFlags, pd: RolePd | None, serving_is_pd: bool, looks_pd: bool
) -> Iterator[FieldError]:
    path: Path = (*_TEMPLATE, "roles", index)
    declared = role.disaggregation or RoleDisaggregation()
    kind_field = format_path((*path, "disaggregation", "kind"))
    yield from _flag_values(index, flags, declared, serving_is_pd, kind_field)
    if declared.kind and flags.kind and declared.kind != flags.kind:
        yield FieldError(
            (*path, "disaggregation", "kind"),
            f"contradicts the engine flags of {format_path(_flag_path(index, flags))}, which make the "
            f"role {flags.kind}",
            value=declared.kind,
            fix=f"set kind: {flags.kind}, or change the engine's flags to {_ENGINE_FLAGS[declared.kind]}",
        )
    yield from _protocol(path, flags, declared)
    yield from _bootstrap_port(path, flags, declared, pd)
    if pd is None and looks_pd and flags.kv_role != "kv_both" and _named_like_a_side(role.name):
        yield FieldError(
            (*path, "name"),
            "is served aggregated: the name alone does not make a prefill or decode role, and neither "
            "disaggregation.kind nor the engine flags say which side it is",
            value=role.name,
            severity="warning",
            fix=f"set {kind_field}: {_side_named(role.name)} (or give its engine "
            f"{_ENGINE_FLAGS[_side_named(role.name)]})",
        )
    if pd is None and (declared.protocol or declared.bootstrap_port):
        yield FieldError(
            (*path, "disaggregation"),
            "has no effect: the role has no PD kind, so it is served aggregated",
            severity="warning",
            fix=f"set {kind_field}: prefill or decode, or remove the section",
        )
    if pd is not None and not declared.protocol and flags.flavour is None and flags.engine in (None, "sim"):
        yield FieldError(
            (*path, "disaggregation", "protocol"),
            f"is not set and the engine flags do not show it, so {DEFAULT_PROTOCOL} (kv_transfer_params) "
            "is assumed",
            severity="warning",
            fix="set protocol: vllm or sglang, as the engine speaks",
        )


def _flag_values(
    index: int, flags: EngineFlags, declared: RoleDisaggregation, serving_is_pd: bool, kind_field: str
) -> Iterator[FieldError]:
    """The PD flags' own values: what the engine would refuse, and what says no side.

    What only the engine refuses is a warning: the API server (and Kthena) accept the pods, and
    Kthena's own converter test data carries a --kv-transfer-config its shell quoting breaks."""
    flag_path = _flag_path(index, flags)
    if flags.problem is not None and (flags.engine_refuses or declared.kind is None):
        yield FieldError(
            flag_path,
            f"{KV_TRANSFER_FLAG} {flags.problem}",
            severity="warning",
            fix=f'write it as one JSON object such as \'{{"kv_connector":"NixlConnector",'
            f'"kv_role":"kv_producer"}}\', or set {kind_field}',
        )
    if flags.flavour == "vllm" and flags.kv_role is not None and flags.kv_role not in _KV_ROLE_VALUES:
        yield FieldError(
            flag_path,
            f"{KV_TRANSFER_FLAG} has kv_role {flags.kv_role!r}, which vLLM refuses",
            value=flags.kv_role,
            severity="warning",
            fix="use kv_role kv_producer (prefill), kv_consumer (decode) or kv_both",
        )
    if flags.flavour == "sglang" and flags.mode is not None and flags.mode not in _SGLANG_MODE_VALUES:
        yield FieldError(
            flag_path,
            f"{SGLANG_MODE_FLAG} is {flags.mode!r}, which SGLang refuses",
            value=flags.mode,
            severity="warning",
            fix=f"use {SGLANG_MODE_FLAG} prefill or decode",
        )
    if flags.flavour == "vllm" and flags.kv_role == "kv_both" and declared.kind is None:
        yield FieldError(
            flag_path,
            f"{KV_TRANSFER_FLAG} has kv_role kv_both, which does not say whether the role prefills or "
            "decodes, so it is served aggregated"
            + (" while other roles of the serving are prefill or decode roles" if serving_is_pd else ""),
            value="kv_both",
            severity="error" if serving_is_pd else "warning",
            fix=f"set {kind_field}: prefill or decode (or kv_role kv_producer / kv_consumer)",
        )


def _protocol(path: Path, flags: EngineFlags, declared: RoleDisaggregation) -> Iterator[FieldError]:
    if declared.protocol is None:
        return
    engine_protocol = flags.flavour or (flags.engine if flags.engine in ("vllm", "sglang") else None)
    if engine_protocol is not None and engine_protocol != declared.protocol:
        said = (
            f"its {KV_TRANSFER_FLAG} is vLLM's"
            if flags.flavour == "vllm"
            else f"its {SGLANG_MODE_FLAG} is SGLang's"
            if flags.flavour == "sglang"
            else f"the entry container runs {flags.engine}"
        )
        yield FieldError(
            (*path, "disaggregation", "protocol"),
            f"does not match the engine: {said}, so the router would hand requests over the wrong way",
            value=declared.protocol,
            fix=f"set protocol: {engine_protocol}, or remove it (it is read from the engine flags)",
        )


def _bootstrap_port(
    path: Path, flags: EngineFlags, declared: RoleDisaggregation, pd: RolePd | None
) -> Iterator[FieldError]:
    port = declared.bootstrap_port
    if port is None:
        return
    field: Path = (*path, "disaggregation", "bootstrapPort")
    if pd is None or pd.kind != "prefill" or pd.protocol != "sglang":
        yield FieldError(
            field,
            "has no effect: only SGLang prefill roles have a bootstrap server",
            value=port,
            severity="warning",
            fix="remove it",
        )
        return
    if flags.flavour == "sglang":
        listens = flags.bootstrap_port_number or DEFAULT_BOOTSTRAP_PORT
        if listens != port:
            yield FieldError(
                field,
                f"differs from the port the engine's bootstrap server listens on ({listens}), so "
                "decode pods could not fetch the KV cache",
                value=port,
                fix=f"set bootstrapPort: {listens}, or pass --disaggregation-bootstrap-port {port} to "
                "the engine",
            )


def _named_like_a_side(name: str) -> bool:
    return any(name == side or name.startswith(f"{side}-") for side in ("prefill", "decode"))


def _side_named(name: str) -> str:
    return "prefill" if name.startswith("prefill") else "decode"


def _sides(ms: ModelServing, pds: list[RolePd | None]) -> Iterator[FieldError]:
    roles = ms.spec.template.roles
    by_kind: dict[str, list[str]] = {"prefill": [], "decode": []}
    for role, pd in zip(roles, pds, strict=True):
        if pd is not None:
            by_kind[pd.kind].append(role.name)
    path: Path = (*_TEMPLATE, "roles")
    for kind, other in (("prefill", "decode"), ("decode", "prefill")):
        if by_kind[kind] and not by_kind[other]:
            names = ", ".join(by_kind[kind])
            yield FieldError(
                path,
                f"have {kind} role(s) ({names}) but no {other} role, so no request could be served",
                value=names,
                fix=f"add a {other} role (disaggregation.kind: {other}, or an engine with "
                f"{_ENGINE_FLAGS[other]}), or remove the PD settings of {names}",
            )
    protocols = {pd.protocol for pd in pds if pd is not None}
    if len(protocols) > 1:
        described = ", ".join(
            f"{role.name}: {pd.protocol}" for role, pd in zip(roles, pds, strict=True) if pd
        )
        yield FieldError(
            path,
            "mix handover protocols, so prefill and decode pods could not pair",
            value=described,
            fix="run one engine kind on every prefill and decode role (vLLM's kv_transfer_params, or "
            "SGLang's bootstrap)",
        )
    template = ms.spec.template.disaggregation
    if template is not None and template.pairing != "ModelServing" and not protocols:
        yield FieldError(
            (*_TEMPLATE, "disaggregation", "pairing"),
            "has no effect: no role of the serving is a prefill or decode role",
            value=template.pairing,
            severity="warning",
            fix="remove it, or declare the roles' disaggregation.kind",
        )
