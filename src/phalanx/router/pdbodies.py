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
from dataclasses import dataclass
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


def encode_json(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


# What a removed field is replaced by when the body is edited without parsing it: the value that
# means "not given" to vLLM and SGLang.
_NEUTRAL: Mapping[str, Any] = {"stream_options": None, "min_tokens": 0}


@dataclass(frozen=True)
class ClientBody:
    """The client's request body, a JSON object the router already checked.

    `payload` is it parsed, when it was small enough to parse on the event loop; a larger one is
    edited without parsing (a request of megabytes must not stall every other request): the new
    members are appended, which the engines' JSON parsers (Python's, last name wins) read over the
    client's, and a removed field is set to the value that means "not given"."""

    raw: bytes
    payload: dict[str, Any] | None = None

    def edited(self, changes: Mapping[str, Any], drop: tuple[str, ...] = ()) -> bytes:
        if self.payload is not None:
            out = {k: v for k, v in self.payload.items() if k not in drop}
            return encode_json(out | dict(changes))
        members = {name: _NEUTRAL[name] for name in drop} | dict(changes)
        head = self.raw.rstrip()
        if not head.endswith(b"}"):
            raise ValueError("the body is not a JSON object")
        head = head[:-1].rstrip()
        appended = b",".join(encode_json(k) + b":" + encode_json(v) for k, v in members.items())
        return head + (b"" if head.endswith(b"{") else b",") + appended + b"}"


def _one_token(chat: bool) -> dict[str, Any]:
    """What reduces a request to its prefill: one token, not streamed (`max_completion_tokens`
    is chat's name for the cap, and vLLM reads it first)."""
    return {"stream": False, "max_tokens": 1} | ({"max_completion_tokens": 1} if chat else {})


# `stream_options` is only valid with stream true; `min_tokens` would contradict max_tokens 1.
_PREFILL_DROPS = ("stream_options", "min_tokens")


def vllm_prefill_body(body: ClientBody, chat: bool) -> bytes:
    return body.edited(_one_token(chat) | {"kv_transfer_params": dict(_PREFILL_KV_PARAMS)}, _PREFILL_DROPS)


def vllm_kv_params(answer: object) -> dict[str, Any] | None:
    """The `kv_transfer_params` of prefill's answer, None when absent or not an object (vLLM
    sends them only when the request stopped on its length cap)."""
    if not isinstance(answer, dict):
        return None
    params = answer.get("kv_transfer_params")
    return params if isinstance(params, dict) and params else None


def vllm_decode_body(body: ClientBody, kv_params: Mapping[str, Any]) -> bytes:
    """The client's request with prefill's `kv_transfer_params`, verbatim."""
    return body.edited({"kv_transfer_params": dict(kv_params)})


def new_bootstrap_room(rng: random.Random) -> int:
    """A random non-negative 63-bit id, as SGLang's router and Kthena's draw it."""
    return rng.getrandbits(63)


def bootstrap_host(prefill: Endpoint) -> str:
    """The prefill engine's host, from its URL (IPv6 without brackets, as a socket address)."""
    rest = prefill.url.split("://", 1)[1]
    if rest.startswith("["):
        return rest[1 : rest.index("]")]
    return rest.rsplit(":", 1)[0]


def sglang_bodies(body: ClientBody, prefill: Endpoint, room: int, chat: bool) -> tuple[bytes, bytes]:
    """(prefill body, decode body) of one SGLang disaggregated request."""
    bootstrap = {
        "bootstrap_host": bootstrap_host(prefill),
        "bootstrap_port": prefill.bootstrap_port or DEFAULT_BOOTSTRAP_PORT,
        "bootstrap_room": room,
    }
    return body.edited(_one_token(chat) | bootstrap, _PREFILL_DROPS), body.edited(bootstrap)
