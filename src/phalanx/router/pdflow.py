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

import aiohttp

from phalanx.router.pdbodies import decode_json, vllm_kv_params

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
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Headers, timeout_s: float
) -> tuple[int, bytes] | FallbackReason:
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url, data=body, headers=list(headers)) as resp:
                return resp.status, await resp.read()
    except TimeoutError:
        return "prefill-timeout"
    except aiohttp.ClientError as exc:
        logger.warning("prefill %s failed: %s", url, type(exc).__name__)
        return "prefill-unreachable"


async def vllm_prefill(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Headers, timeout_s: float
) -> dict[str, Any] | FallbackReason:
    """Send prefill its one-token request; its `kv_transfer_params`, or why there are none."""
    answer = await _post(session, url, body, headers, timeout_s)
    if isinstance(answer, str):
        return answer
    status, raw = answer
    if status >= 400:
        logger.warning("prefill %s answered %d", url, status)
        return "prefill-error"
    payload = decode_json(raw)
    if payload is None:
        return "prefill-error"
    params = vllm_kv_params(payload)
    return params if params is not None else "no-kv-transfer-params"


async def sglang_prefill(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Headers, timeout_s: float
) -> FallbackReason | None:
    """Send prefill its bootstrap request and drop the answer; None when it succeeded."""
    answer = await _post(session, url, body, headers, timeout_s)
    if isinstance(answer, str):
        return answer
    if answer[0] >= 400:
        logger.warning("prefill %s answered %d", url, answer[0])
        return "prefill-error"
    return None
