"""The request bodies of the two prefill/decode flows, as pure functions of the client's body.

vLLM (NixlConnector, LMCache): sequential. The prefill engine gets the client's request cut to
one token and not streamed, with `kv_transfer_params.do_remote_decode` true; it answers with the
`kv_transfer_params` that say where its KV blocks are, and those go verbatim into the decode
request, which otherwise is the client's own.

SGLang: concurrent. Both engines get the client's request plus the same `bootstrap_host`
(the prefill engine's host), `bootstrap_port` (its bootstrap server) and `bootstrap_room` (a
random 63-bit id that pairs the two); prefill's copy is cut to one token and not streamed, as
its answer is dropped.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

from phalanx.router.endpoints import DEFAULT_BOOTSTRAP_PORT, Endpoint

# What vLLM's own proxy sends prefill: the decode side is remote, nothing is known of it yet.
_PREFILL_KV_PARAMS: Mapping[str, Any] = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


def decode_json(body: bytes) -> dict[str, Any] | None:
    """The client's body as a JSON object; None when it is not one (the engine then says why)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def encode_json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _one_token(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The client's request reduced to its prefill: one token, not streamed."""
    out = dict(payload)
    out["stream"] = False
    out.pop("stream_options", None)  # only valid with stream true
    out.pop("min_tokens", None)  # would contradict max_tokens 1
    out["max_tokens"] = 1
    if "max_completion_tokens" in out or "messages" in out:  # a chat field; vLLM reads it first
        out["max_completion_tokens"] = 1
    return out


def vllm_prefill_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    out = _one_token(payload)
    out["kv_transfer_params"] = dict(_PREFILL_KV_PARAMS)
    return out


def vllm_kv_params(answer: object) -> dict[str, Any] | None:
    """The `kv_transfer_params` of prefill's answer, None when absent or not an object (vLLM
    sends them only when the request stopped on its length cap)."""
    if not isinstance(answer, dict):
        return None
    params = answer.get("kv_transfer_params")
    return params if isinstance(params, dict) and params else None


def vllm_decode_body(payload: Mapping[str, Any], kv_params: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(payload)
    out["kv_transfer_params"] = dict(kv_params)
    return out


def new_bootstrap_room(rng: random.Random) -> int:
    """A random non-negative 63-bit id, as SGLang's router and Kthena's draw it."""
    return rng.getrandbits(63)


def bootstrap_host(prefill: Endpoint) -> str:
    """The prefill engine's host, from its URL (IPv6 without brackets, as a socket address)."""
    rest = prefill.url.split("://", 1)[1]
    if rest.startswith("["):
        return rest[1 : rest.index("]")]
    return rest.rsplit(":", 1)[0]


def sglang_bodies(
    payload: Mapping[str, Any], prefill: Endpoint, room: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prefill body, decode body) of one SGLang disaggregated request."""
    bootstrap = {
        "bootstrap_host": bootstrap_host(prefill),
        "bootstrap_port": prefill.bootstrap_port or DEFAULT_BOOTSTRAP_PORT,
        "bootstrap_room": room,
    }
    return _one_token(payload) | bootstrap, dict(payload) | bootstrap
