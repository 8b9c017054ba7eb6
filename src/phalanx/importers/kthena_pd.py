"""Kthena's prefill/decode roles, made explicit on import.

A Kthena ModelServing knows its prefill and decode roles only through the engine flags and, for its
router, a ModelServer (`networking.serving.volcano.sh`) whose `workloadSelector.pdGroup` picks the
prefill and decode pods by labels and pairs them by the value of a `groupKey` label. On import:
- a role whose engine flags give its side gets `disaggregation.kind` written out;
- a ModelServer of the same file that selects the serving sets the kinds the flags do not give (and
  the protocol from its `inferenceEngine`), and its `groupKey` becomes `pairing`;
- what has no equivalent (a `groupKey` on another label, the `http` connector) is a note.
The ModelServer itself passes through unchanged: it configures Kthena's router, not the pods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from phalanx.api.disaggregation import KV_TRANSFER_FLAG, SGLANG_MODE_FLAG, pod_spec_engine_flags
from phalanx.api.errors import Path
from phalanx.importers.base import Notes, Object, group_of, source_name

NETWORKING_GROUP = "networking.serving.volcano.sh"
_KTHENA = "modelserving.volcano.sh/"
_PAIRINGS = {_KTHENA + "group-name": "ServingGroup", _KTHENA + "name": "ModelServing"}
_PROTOCOLS = {"vLLM": "vllm", "SGLang": "sglang"}
_TEMPLATE: Path = ("spec", "template")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _role_labels(role: Mapping[str, Any], serving: str) -> dict[str, str]:
    """The labels of a role's entry pods that a Kthena selector may use: the template's and Kthena's."""
    template_labels = _mapping(_mapping(_mapping(role.get("entryTemplate")).get("metadata")).get("labels"))
    labels = {_KTHENA + "name": serving, _KTHENA + "role": str(role.get("name"))}
    # Kthena's own labels yield to the template's, as on its pods (and ours).
    labels.update({str(k): str(v) for k, v in template_labels.items()})
    return labels


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(str(k)) == str(v) for k, v in selector.items())


def model_servers(documents: Sequence[Any], namespace: str) -> list[Mapping[str, Any]]:
    return [
        doc
        for doc in documents
        if isinstance(doc, Mapping)
        and doc.get("kind") == "ModelServer"
        and group_of(doc.get("apiVersion")) == NETWORKING_GROUP
        and (_mapping(doc.get("metadata")).get("namespace") or "default") == namespace
    ]


def make_pd_explicit(
    spec: Object, serving: str, namespace: str, documents: Sequence[Any], notes: Notes
) -> None:
    roles = _mapping(spec.get("template")).get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, dict) for r in roles):
        return  # validation of the output reports the roles' shape
    for index, role in enumerate(roles):
        _kind_from_flags(role, (*_TEMPLATE, "roles", index), notes)
    for server in model_servers(documents, namespace):
        selector = _mapping(_mapping(server.get("spec")).get("workloadSelector"))
        labels = [_role_labels(role, serving) for role in roles]
        if not any(_selects(_mapping(selector.get("matchLabels")), role_labels) for role_labels in labels):
            continue
        pd_group = _mapping(selector.get("pdGroup"))
        if pd_group:
            _apply_pd_group(spec, roles, labels, server, pd_group, notes)


def _kind_from_flags(role: dict[str, Any], path: Path, notes: Notes) -> None:
    if "disaggregation" in role:
        return
    flags = pod_spec_engine_flags(_mapping(_mapping(role.get("entryTemplate")).get("spec")))
    if flags.kind is None:
        return
    role["disaggregation"] = {"kind": flags.kind}
    flag = KV_TRANSFER_FLAG if flags.flavour == "vllm" else SGLANG_MODE_FLAG
    notes.info((*path, "disaggregation"), f"kind {flags.kind} is what the engine's {flag} says, written out")


def _apply_pd_group(
    spec: Object,
    roles: list[dict[str, Any]],
    labels: list[dict[str, str]],
    server: Mapping[str, Any],
    pd_group: Mapping[str, Any],
    notes: Notes,
) -> None:
    name = source_name(server)
    server_spec = _mapping(server.get("spec"))
    protocol = _PROTOCOLS.get(str(server_spec.get("inferenceEngine")))
    for index, (role, role_labels) in enumerate(zip(roles, labels, strict=True)):
        path: Path = (*_TEMPLATE, "roles", index, "disaggregation")
        side = next(
            (
                kind
                for kind, key in (("prefill", "prefillLabels"), ("decode", "decodeLabels"))
                if _selects(_mapping(pd_group.get(key)), role_labels)
            ),
            None,
        )
        if side is None:
            continue
        declared = _mapping(role.get("disaggregation")).get("kind")
        if declared is not None and declared != side:
            notes.lost(
                path,
                f"{name}'s pdGroup makes this role {side}, but its engine flags make it {declared}: "
                "the flags are kept",
            )
            continue
        if declared is None:
            section: dict[str, Any] = {"kind": side}
            flags = pod_spec_engine_flags(_mapping(_mapping(role.get("entryTemplate")).get("spec")))
            if protocol is not None and flags.flavour is None:
                section["protocol"] = protocol
            role["disaggregation"] = section
            notes.info(path, f"kind {side} from {name}'s pdGroup (the engine flags do not say it)")
    _pairing(spec, roles, labels, name, str(pd_group.get("groupKey") or ""), notes)
    _connector(str(_mapping(server_spec.get("kvConnector")).get("type") or "http"), name, notes)


def _pairing(
    spec: Object, roles: list[dict[str, Any]], labels: list[dict[str, str]], name: str, key: str, notes: Notes
) -> None:
    path: Path = (*_TEMPLATE, "disaggregation")
    pd_labels = [lbl for role, lbl in zip(roles, labels, strict=True) if "disaggregation" in role]
    if key in _PAIRINGS or not key:
        pairing = _PAIRINGS.get(key, "ModelServing")
        if pairing != "ModelServing":
            template = spec.setdefault("template", {})
            template["disaggregation"] = {"pairing": pairing}
        notes.info(path, f"{name}'s pdGroup groupKey {key or '(none)'}: pairing {pairing}")
        return
    values = {lbl.get(key) for lbl in pd_labels}
    if len(values) == 1 and None not in values:
        notes.info(
            path,
            f"{name}'s pdGroup pairs pods by label {key}, which every prefill and decode pod has with the "
            "same value: pairing ModelServing",
        )
        return
    notes.lost(
        path,
        f"{name}'s pdGroup pairs pods by label {key}; Phalanx pairs prefill and decode pods within the "
        "ModelServing or within a ServingGroup (spec.template.disaggregation.pairing): ModelServing is used",
    )


def _connector(kind: str, name: str, notes: Notes) -> None:
    path: Path = (*_TEMPLATE, "disaggregation")
    if kind == "http":
        notes.lost(
            path,
            f"{name}'s kvConnector http (prefill, then decode with no transfer parameters, for a shared KV "
            "store) has no equivalent: Phalanx's router hands vLLM requests over with kv_transfer_params",
        )
    else:
        notes.info(
            path,
            f"{name}'s kvConnector {kind}: Phalanx's router hands requests over by each role's protocol; "
            "the connector itself is the engine's --kv-transfer-config",
        )
