"""The HTTP handler's prefill/decode steps: around `Engine.submit`, per the request's `Plan`.

vLLM decode: pull the KV from the prefill engine before admission; a failed pull is an error
(`kv_load_failure_policy: fail`) or a local prefill (`recompute`). vLLM prefill: keep the KV
under a lease and answer `kv_transfer_params`. SGLang prefill: wait for the decode engine to join
the bootstrap room (or abort), prefill, hand the KV over, answer. SGLang decode: join the room,
wait for the KV, decode.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from phalanx.sim.config import SimConfig
from phalanx.sim.engine import Engine, RequestHandle
from phalanx.sim.pdconfig import TransferLink
from phalanx.sim.pdrequest import (
    Local,
    Plan,
    RemoteKv,
    SglangPrefill,
    VllmPrefill,
    remote_decode_params,
)
from phalanx.sim.protocol import GenerationRequest, RequestError
from phalanx.sim.sidechannel import KvListener, Room, TransferFailed, pull_kv

log = logging.getLogger("phalanx.sim")


@dataclass
class Prepared:
    """What the handler passes to `Engine.submit`, and the SGLang room it holds."""

    hold_kv: str | None = None
    remote_kv: bool = False
    room: Room | None = None
    only_first_token: bool = False  # SGLang prefill computes the prompt and its first token only


class PdFlows:
    def __init__(self, config: SimConfig, engine: Engine, listener: KvListener | None) -> None:
        self._config = config
        self._engine = engine
        self._listener = listener
        self._link = TransferLink(config.kv_bandwidth_gb_s)
        kv = config.kv_transfer
        self.engine_id = (kv.engine_id if kv is not None else None) or str(uuid.uuid4())

    async def prepare(self, plan: Plan, req: GenerationRequest) -> Prepared:
        """Steps before admission; a RequestError is the answer to send instead."""
        if isinstance(plan, Local):
            if plan.warning:
                log.warning("%s", plan.warning)
            return Prepared()
        if isinstance(plan, VllmPrefill):
            return Prepared(hold_kv="length")
        if isinstance(plan, SglangPrefill):
            return Prepared(hold_kv="any", room=await self._await_decode(plan.room), only_first_token=True)
        if isinstance(plan, RemoteKv):
            first: dict[str, object] = {"t": "pull", "id": plan.lease_id}
            return await self._pull(plan.host, plan.port, first, req, connect_timeout=0.0, wait=10.0)
        sglang = self._config.sglang
        assert sglang is not None  # plan_request gives SglangDecode only in SGLang decode mode
        boot = plan.bootstrap
        first = {"t": "room", "room": boot.room}
        wait = sglang.waiting_timeout
        return await self._pull(boot.host, boot.port, first, req, connect_timeout=wait, wait=wait)

    def response_params(self, plan: Plan, handle: RequestHandle) -> dict[str, Any] | None:
        """vLLM prefill's `kv_transfer_params`: only when a lease was made (length cap)."""
        kv = self._config.kv_transfer
        if not isinstance(plan, VllmPrefill) or handle.leased_blocks is None or kv is None:
            return None
        return remote_decode_params(
            engine_id=self.engine_id,
            request_id=handle.request_id,
            block_ids=handle.leased_blocks,
            host=kv.side_channel_host,
            port=kv.side_channel_port,
            tp_size=self._config.tensor_parallel_size,
        )

    async def finish(self, plan: Plan, prepared: Prepared, handle: RequestHandle | None) -> None:
        """After generation (or on failure, handle None or unfinished): SGLang prefill hands the KV
        to the decode engine in its room and answers once it was read (or its lease ran out)."""
        if not isinstance(plan, SglangPrefill) or prepared.room is None or self._listener is None:
            return
        lease_id = handle.request_id if handle is not None and handle.leased_blocks is not None else None
        if lease_id is None:
            self._listener.close_room(
                plan.room, prepared.room, "error:the prefill request failed or was aborted"
            )
            return
        self._listener.close_room(plan.room, prepared.room, lease_id)
        try:
            await self._engine.wait_lease_gone(lease_id)
        finally:
            self._engine.release_lease(lease_id)  # the client hung up: free the KV now

    async def _await_decode(self, room: int) -> Room:
        assert self._listener is not None and self._config.sglang is not None
        try:
            entry = self._listener.open_room(room)
        except ValueError as exc:
            raise RequestError(400, str(exc), "bootstrap_room") from None
        timeout = self._config.sglang.bootstrap_timeout
        try:
            await asyncio.wait_for(entry.decode_joined.wait(), timeout)
        except TimeoutError:
            self._listener.close_room(room, entry, "error:the prefill request timed out waiting for decode")
            raise RequestError(
                500,
                f"bootstrap_room {room}: the decode engine did not connect within {timeout:g} s "
                "(SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT); the prefill request was aborted.",
            ) from None
        except asyncio.CancelledError:
            self._listener.close_room(room, entry, "error:the prefill request was aborted")
            raise
        return entry

    async def _pull(
        self,
        host: str,
        port: int,
        first: dict[str, object],
        req: GenerationRequest,
        *,
        connect_timeout: float,
        wait: float,
    ) -> Prepared:
        prompt_tokens = len(req.prompts[0])
        try:
            pulled = await pull_kv(
                host, port, first, self._link, connect_timeout=connect_timeout, wait_timeout=wait
            )
            if pulled.tokens != prompt_tokens:
                raise TransferFailed(
                    f"the KV holds {pulled.tokens} tokens but the prompt has {prompt_tokens}"
                )
        except TransferFailed as exc:
            self._engine.metrics.observe_failed_transfer()
            kv = self._config.kv_transfer
            if kv is not None and kv.load_failure_policy == "recompute":
                log.warning("KV load failed (%s); recomputing the prompt here (kv_load_failure_policy)", exc)
                return Prepared()
            raise RequestError(500, f"KV load failed: {exc}") from None
        self._engine.metrics.observe_transfer(pulled.seconds, pulled.num_bytes)
        return Prepared(remote_kv=True)
