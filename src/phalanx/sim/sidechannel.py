"""KV handed from a prefill engine to a decode engine over a real TCP socket (line-delimited JSON).

The prefill engine listens (vLLM: the NIXL side channel, `VLLM_NIXL_SIDE_CHANNEL_HOST:PORT`;
SGLang: the bootstrap server, `--disaggregation-bootstrap-port`); the decode engine connects:

  decode  -> prefill {"t": "pull", "id": remote_request_id}     vLLM: read a lease
  decode  -> prefill {"t": "room", "room": r}                   SGLang: join a bootstrap room
  prefill -> decode  {"t": "kv", "tokens": n, "bytes": b} | {"t": "error", "reason": ...}
  decode  -> prefill {"t": "done"}   (after sleeping bytes / bandwidth) | {"t": "abort"}
  prefill -> decode  {"t": "freed"} | {"t": "error", "reason": "... expired during the transfer"}

No KV bytes cross the socket: the transfer time is computed from the byte count and slept on the
decode engine's clock, beside its step loop. A decode side that disappears mid-pull leaves the
lease to expire, so the blocks are freed either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from phalanx.sim.cluster import decode, encode
from phalanx.sim.engine import Engine
from phalanx.sim.leases import Lease
from phalanx.sim.pdconfig import TransferLink

log = logging.getLogger("phalanx.sim")

READ_LIMIT = 64 * 1024  # a control message is a few hundred bytes
REPLY_TIMEOUT = 10.0  # how long either side waits for the other's next control message


class TransferFailed(Exception):
    """The KV could not be read: the lease is unknown, expired, refused or the peer went away."""


@dataclass
class Room:
    """One SGLang bootstrap room: the prefill request and the decode connection meet here."""

    decode_joined: asyncio.Event = field(default_factory=asyncio.Event)
    kv: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    prefill_owned: bool = False


@dataclass(frozen=True)
class Faults:
    refuse_pulls: bool = False
    bootstrap_delay: float = 0.0


class KvListener:
    """The prefill engine's side: serves pulls of its leases and SGLang bootstrap rooms."""

    def __init__(self, engine: Engine, host: str, port: int, bytes_per_token: int, faults: Faults) -> None:
        self._engine = engine
        self._host = host
        self._port = port
        self._bytes_per_token = bytes_per_token
        self._faults = faults
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.rooms: dict[int, Room] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port, limit=READ_LIMIT)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def open_room(self, room: int) -> Room:
        """The prefill request of `room` arrived; ValueError when another one holds the room."""
        entry = self.rooms.setdefault(room, Room())
        if entry.prefill_owned:
            raise ValueError(f"bootstrap_room {room} is already in use by another prefill request")
        entry.prefill_owned = True
        return entry

    def close_room(self, room: int, entry: Room, outcome: str) -> None:
        """The prefill request of `room` is done: hand the decode side its lease id or an error."""
        if not entry.kv.done():
            entry.kv.set_result(outcome)
        if self.rooms.get(room) is entry:
            del self.rooms[room]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            log.info("side channel connection ended: %s", exc)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT)
        if not first:
            return
        message = decode(first)
        if self._faults.bootstrap_delay:
            await asyncio.sleep(self._faults.bootstrap_delay)
        if self._faults.refuse_pulls:
            await _send(
                writer, {"t": "error", "reason": "the prefill engine refused the transfer (fault injection)"}
            )
            return
        if message.get("t") == "pull":
            lease_id = str(message.get("id"))
        elif message.get("t") == "room" and isinstance(message.get("room"), int):
            outcome = await self._join_room(message["room"], reader)
            if outcome is None:
                return  # the decode side went away while it waited
            if outcome.startswith("error:"):
                await _send(writer, {"t": "error", "reason": outcome[len("error:") :]})
                return
            lease_id = outcome
        else:
            await _send(writer, {"t": "error", "reason": f"unknown message {message.get('t')!r}"})
            return
        got = self._engine.begin_pull(lease_id)
        if isinstance(got, str):
            await _send(writer, {"t": "error", "reason": f"KV of request {lease_id} is {got} on this engine"})
            return
        await self._hand_over(got, reader, writer)

    async def _join_room(self, room: int, reader: asyncio.StreamReader) -> str | None:
        entry = self.rooms.setdefault(room, Room())
        entry.decode_joined.set()
        gone: asyncio.Future[Any] = asyncio.ensure_future(reader.read(1))  # EOF: decode gave up
        kv: asyncio.Future[Any] = entry.kv
        try:
            await asyncio.wait({kv, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            await asyncio.wait({gone})  # the read must be over before the hand-over reads again
            if not entry.prefill_owned and self.rooms.get(room) is entry and not entry.kv.done():
                del self.rooms[room]
        return entry.kv.result() if entry.kv.done() else None

    async def _hand_over(
        self, lease: Lease, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        num_bytes = lease.tokens * self._bytes_per_token
        await _send(writer, {"t": "kv", "tokens": lease.tokens, "bytes": num_bytes})
        line = await reader.readline()  # no timeout: the transfer takes what it takes; the lease bounds it
        reply = decode(line) if line else {}
        if reply.get("t") == "done":
            if self._engine.end_pull(lease.lease_id):
                await _send(writer, {"t": "freed"})
            else:
                reason = f"the KV lease of {lease.lease_id} expired during the transfer"
                await _send(writer, {"t": "error", "reason": reason})
        elif reply.get("t") == "abort":
            self._engine.release_lease(lease.lease_id)
        else:
            lease.pulling = False  # the decode side vanished: the lease expires on its own


async def _send(writer: asyncio.StreamWriter, message: dict[str, object]) -> None:
    writer.write(encode(message))
    await writer.drain()


@dataclass(frozen=True)
class Pulled:
    tokens: int
    num_bytes: int
    seconds: float


async def pull_kv(
    host: str,
    port: int,
    first: dict[str, object],
    link: TransferLink,
    *,
    connect_timeout: float,
    wait_timeout: float,
) -> Pulled:
    """The decode engine's side: ask for the KV, take the transfer time, confirm, and return what
    arrived. Raises TransferFailed; on cancellation (client gone) tells prefill to free the KV."""
    loop = asyncio.get_running_loop()
    reader, writer = await _connect(host, port, connect_timeout)
    done = False
    try:
        await _send(writer, first)
        kv = await _reply(reader, wait_timeout, "the KV")
        tokens, num_bytes = kv.get("tokens"), kv.get("bytes")
        if not isinstance(tokens, int) or not isinstance(num_bytes, int):
            raise TransferFailed(f"the prefill engine sent a malformed KV offer: {kv}")
        started = loop.time()
        await asyncio.sleep(max(0.0, link.book(started, num_bytes) - started))
        await _send(writer, {"t": "done"})
        done = True
        await _reply(reader, REPLY_TIMEOUT, "the transfer's confirmation")
        return Pulled(tokens, num_bytes, loop.time() - started)
    except asyncio.CancelledError:
        if not done:
            with contextlib.suppress(OSError):
                writer.write(encode({"t": "abort"}))
        raise
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _connect(host: str, port: int, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Retry until `timeout`: an SGLang decode request may reach its pod before the prefill pod listens."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=READ_LIMIT), REPLY_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            if loop.time() >= deadline:
                raise TransferFailed(f"cannot reach the prefill engine at {host}:{port}: {exc}") from None
            await asyncio.sleep(0.05)


async def _reply(reader: asyncio.StreamReader, timeout: float, what: str) -> dict[str, object]:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise TransferFailed(f"the prefill engine sent no answer for {what} within {timeout:g} s") from None
    if not line:
        raise TransferFailed(f"the prefill engine closed the connection before {what}")
    try:
        message = decode(line)
    except ValueError:
        raise TransferFailed(f"the prefill engine sent an unreadable answer for {what}") from None
    if message.get("t") == "error":
        raise TransferFailed(str(message.get("reason")))
    return message
