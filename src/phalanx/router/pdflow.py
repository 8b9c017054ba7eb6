"""The prefill step of a disaggregated request: thin I/O around `pdbodies`.

vLLM's prefill is awaited before decode is sent (its answer carries the KV location); SGLang's is
sent beside decode and only watched. Either way a failure becomes a `FallbackReason` rather than
an exception, so the router serves the request decode-only and counts why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final, Literal

from phalanx.router.pdbodies import decode_json, vllm_kv_params
from phalanx.router.upstream import UpstreamError
from phalanx.router.upstream_session import Upstreams

logger = logging.getLogger("phalanx.router")

# Why a request fell back to decode-only; a fixed vocabulary, safe as a metric label.
FallbackReason = Literal[
    "prefill-error",  # prefill answered an HTTP error, or something that is not JSON
    "prefill-timeout",  # no whole answer within the prefill timeout
    "prefill-unreachable",  # no connection, or it dropped before the answer
    "no-kv-transfer-params",  # vLLM prefill answered without kv_transfer_params
]
# vLLM only, after prefill succeeded: decode answered 5xx to the request carrying prefill's
# kv_transfer_params (the lease expired, the pull was refused) before any byte reached the client.
KV_LOAD_FAILED: Final = "kv-load-failed"

Headers = Sequence[tuple[str, str]]


async def _post(
    upstreams: Upstreams, origin: str, target: str, body: bytes, headers: Headers, timeout_s: float
) -> tuple[int, bytes] | FallbackReason:
    try:
        async with asyncio.timeout(timeout_s):
            resp = await upstreams.request("POST", origin, target, headers, body)
            try:
                return resp.status, await resp.read()
            finally:
                resp.finish()
    except TimeoutError:
        return "prefill-timeout"
    except UpstreamError as exc:
        logger.warning("prefill %s%s failed: %s", origin, target, exc.label)
        return "prefill-unreachable"


async def vllm_prefill(
    upstreams: Upstreams, origin: str, target: str, body: bytes, headers: Headers, timeout_s: float
) -> dict[str, Any] | FallbackReason:
    """Send prefill its one-token request; its `kv_transfer_params`, or why there are none."""
    answer = await _post(upstreams, origin, target, body, headers, timeout_s)
    if isinstance(answer, str):
        return answer
    status, raw = answer
    if status >= 400:
        logger.warning("prefill %s%s answered %d", origin, target, status)
        return "prefill-error"
    payload = decode_json(raw)
    if payload is None:
        return "prefill-error"
    params = vllm_kv_params(payload)
    return params if params is not None else "no-kv-transfer-params"


async def sglang_prefill(
    upstreams: Upstreams, origin: str, target: str, body: bytes, headers: Headers, timeout_s: float
) -> FallbackReason | None:
    """Send prefill its bootstrap request and drop the answer; None when it succeeded."""
    answer = await _post(upstreams, origin, target, body, headers, timeout_s)
    if isinstance(answer, str):
        return answer
    if answer[0] >= 400:
        logger.warning("prefill %s%s answered %d", origin, target, answer[0])
        return "prefill-error"
    return None
