"""What a request asks of a disaggregated engine, decided from its fields and the engine's flags; pure.

vLLM: `kv_transfer_params.do_remote_decode` makes this engine the prefill side (keep the KV under a
lease when the request stops on the length cap); `do_remote_prefill` with the remote fields makes
it the decode side (pull the KV first). Incomplete remote fields are computed locally with a
warning, as vLLM's NixlConnector does. SGLang: the engine's `--disaggregation-mode` decides the
side, and both sides need `bootstrap_host`/`_port`/`_room`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phalanx.sim.pdconfig import KvTransfer, SglangDisaggregation
from phalanx.sim.protocol import Bootstrap, GenerationRequest, RequestError


@dataclass(frozen=True)
class Local:
    """An ordinary request (aggregated serving, or fields this engine ignores)."""

    warning: str | None = None


@dataclass(frozen=True)
class VllmPrefill:
    pass


@dataclass(frozen=True)
class RemoteKv:
    """Where a vLLM decode request's prompt KV waits: the prefill engine's side channel."""

    host: str
    port: int
    lease_id: str
    engine_id: str


@dataclass(frozen=True)
class SglangPrefill:
    room: int


@dataclass(frozen=True)
class SglangDecode:
    bootstrap: Bootstrap


Plan = Local | VllmPrefill | RemoteKv | SglangPrefill | SglangDecode

_REMOTE_FIELDS = ("remote_engine_id", "remote_request_id", "remote_host", "remote_port")


def plan_request(req: GenerationRequest, kv: KvTransfer | None, sglang: SglangDisaggregation | None) -> Plan:
    if sglang is not None:
        if req.bootstrap is None:
            raise RequestError(
                400,
                f"this engine serves the {sglang.mode} side of a disaggregated pair: the request needs "
                "bootstrap_host, bootstrap_port and bootstrap_room (a PD router sets them).",
                "bootstrap_room",
            )
        if sglang.mode == "prefill":
            return SglangPrefill(req.bootstrap.room)
        return SglangDecode(req.bootstrap)
    params = req.kv_transfer_params
    if kv is None or not params:
        return Local()  # vLLM without a KV connector ignores kv_transfer_params
    if params.get("do_remote_prefill"):
        return _remote_kv(params)
    if params.get("do_remote_decode"):
        if req.stream:
            return Local("kv_transfer_params.do_remote_decode on a streamed request: served without a lease")
        return VllmPrefill()
    return Local()


def _remote_kv(params: dict[str, Any]) -> RemoteKv | Local:
    blocks = params.get("remote_block_ids")
    missing = [name for name in _REMOTE_FIELDS if params.get(name) is None]
    if not blocks:
        return Local("kv_transfer_params.do_remote_prefill without remote_block_ids: prefilled here")
    if missing:
        return Local(f"kv_transfer_params lacks {', '.join(missing)}: this request will not use KV transfer")
    host, port = params["remote_host"], params["remote_port"]
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        return Local(f"kv_transfer_params remote_host/remote_port {host!r}:{port!r} are not an address")
    return RemoteKv(host, port, str(params["remote_request_id"]), str(params["remote_engine_id"]))


def remote_decode_params(
    *, engine_id: str, request_id: str, block_ids: list[int], host: str, port: int, tp_size: int
) -> dict[str, Any]:
    """What vLLM's prefill engine answers in `kv_transfer_params` (block ids per KV-cache group)."""
    return {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": [block_ids],
        "remote_engine_id": engine_id,
        "remote_request_id": request_id,
        "remote_host": host,
        "remote_port": port,
        "tp_size": tp_size,
    }
