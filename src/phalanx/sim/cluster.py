"""The group's ranks over TCP: line-delimited JSON on asyncio streams.

Protocol (one JSON object per line):
  worker -> entry  {"t": "hello", "worker": i}       first line after connecting
  entry  -> worker {"t": "welcome"} | {"t": "reject", "reason": ...}
  entry  -> worker {"t": "step" | "hb", "n": k}       every engine step; a heartbeat when idle
  worker -> entry  {"t": "ack", "n": k}
  entry  -> worker {"t": "bye"}                       the entry shuts down cleanly

Like the ranks of a multi-node vLLM, every rank takes part in every step, so a rank that dies
(connection closed) or hangs (no ack within `ack_timeout`) stops the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from phalanx.sim.engine import ClusterFailure

log = logging.getLogger("phalanx.sim")

ACK_TIMEOUT = 1.0
HEARTBEAT_INTERVAL = 0.2
HELLO_TIMEOUT = 5.0


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


def _address(peername: Any) -> str:
    """`host:port` of a TCP peer (asyncio gives a tuple, which would print as a Python repr)."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = peername[0], peername[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peername) if peername else "an unknown address"


@dataclass
class _Peer:
    index: int
    writer: asyncio.StreamWriter
    acked: int = 0


class EntryCluster:
    """The entry's side: accepts `group_size - 1` workers and runs lock-step rounds with them."""

    def __init__(
        self,
        host: str,
        port: int,
        group_size: int,
        on_failure: Callable[[str], None],
        *,
        ack_timeout: float = ACK_TIMEOUT,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self._host = host
        self._port = port
        self._expected = group_size - 1
        self._on_failure = on_failure
        self._ack_timeout = ack_timeout
        self._heartbeat_interval = heartbeat_interval
        self._peers: dict[int, _Peer] = {}
        self._round = 0
        self._last_round = 0.0
        self._lock = asyncio.Lock()
        self._acks = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.complete = asyncio.Event()
        self.failure: str | None = None
        self._closing = False

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self._host, self._port)
        self._spawn(self._heartbeat())
        log.info("waiting for %d worker(s) on %s:%d", self._expected, self._host, self.bound_port)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handle_connection(reader, writer)
        except asyncio.CancelledError:
            # close() cancels open connections. The task must still end normally: on Python 3.11,
            # start_server's done-callback logs a cancelled handler as an error with a traceback.
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_name = _address(writer.get_extra_info("peername"))
        try:
            hello = decode(await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT))
            index = hello.get("worker")
        except (TimeoutError, ValueError, ConnectionError):
            return
        reason = None
        if hello.get("t") != "hello" or not isinstance(index, int) or not 1 <= index <= self._expected:
            reason = f"bad hello {hello!r}; this group has workers 1..{self._expected}"
        elif index in self._peers:
            reason = f"worker {index} already joined"
        elif self._closing or self.failure is not None:
            reason = "the entry is shutting down"
        if reason is not None:
            log.warning("rejected a worker from %s: %s", peer_name, reason)
            writer.write(encode({"t": "reject", "reason": reason}))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        assert isinstance(index, int)
        peer = _Peer(index, writer, acked=self._round)
        self._peers[index] = peer
        writer.write(encode({"t": "welcome"}))
        log.info("worker %d joined from %s (%d/%d)", index, peer_name, len(self._peers), self._expected)
        if len(self._peers) == self._expected and not self.complete.is_set():
            log.info("all %d worker(s) joined", self._expected)
            self.complete.set()
        await self._read_acks(peer, reader)

    async def _read_acks(self, peer: _Peer, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = decode(line)
                if message.get("t") == "ack" and isinstance(message.get("n"), int):
                    peer.acked = max(peer.acked, message["n"])
                    self._acks.set()
        except (ValueError, ConnectionError) as exc:
            log.warning("worker %d sent garbage or reset: %s", peer.index, exc)
        if self._closing:
            return
        if self.complete.is_set():
            self._fail(f"worker {peer.index} disconnected")
        else:
            # Before the group ever formed, a worker may come and go (its pod restarting).
            self._peers.pop(peer.index, None)
            log.warning("worker %d left before the group was complete", peer.index)

    def _fail(self, reason: str) -> None:
        if self.failure is not None or self._closing:
            return
        self.failure = reason
        self._acks.set()
        log.error("rank failure: %s", reason)
        self._on_failure(reason)

    async def barrier(self) -> None:
        """One lock-step round: every worker must acknowledge within `ack_timeout`."""
        await self._round_trip("step")

    async def _round_trip(self, kind: str) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self.failure is not None:
                raise ClusterFailure(self.failure)
            self._round += 1
            n = self._round
            self._last_round = loop.time()
            line = encode({"t": kind, "n": n})
            peers = list(self._peers.values())
            for peer in peers:
                peer.writer.write(line)
            deadline = loop.time() + self._ack_timeout
            while True:
                if self.failure is not None:
                    raise ClusterFailure(self.failure)
                late = [p.index for p in peers if p.acked < n]
                if not late:
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    reason = f"worker {late[0]} did not acknowledge within {self._ack_timeout:g} s"
                    self._fail(reason)
                    raise ClusterFailure(reason)
                self._acks.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._acks.wait(), remaining)

    async def _heartbeat(self) -> None:
        """Idle groups still check their ranks, so a dead worker is noticed within a second."""
        await self.complete.wait()
        loop = asyncio.get_running_loop()
        while self.failure is None and not self._closing:
            await asyncio.sleep(self._heartbeat_interval)
            if loop.time() - self._last_round < self._heartbeat_interval or self._lock.locked():
                continue
            with contextlib.suppress(ClusterFailure):
                await self._round_trip("hb")

    async def close(self) -> None:
        """Say goodbye to the workers (they exit 0) and stop listening."""
        self._closing = True
        for peer in self._peers.values():
            with contextlib.suppress(ConnectionError):
                peer.writer.write(encode({"t": "bye"}))
                await peer.writer.drain()
            peer.writer.close()
        if self._server is not None:
            self._server.close()
        for task in [*self._tasks, *self._connections]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._connections, return_exceptions=True)


def _connect_error(exc: OSError) -> str:
    """Why a connection failed, in words: asyncio's own message embeds the address as a tuple."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class _Stopped(Exception):
    """SIGTERM came while the worker was still joining: nothing to drain, it just exits."""


_T = TypeVar("_T")


async def _unless_stopped(step: Awaitable[_T], stopping: asyncio.Event) -> _T:
    """The result of `step`, or `_Stopped` as soon as `stopping` is set."""
    task = asyncio.ensure_future(step)
    stop = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (stop, task):
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, TimeoutError):
                    await waiter
    if task.cancelled():
        raise _Stopped
    return task.result()


async def _connect(
    host: str, port: int, timeout: float, stopping: asyncio.Event
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while True:
        try:
            return await _unless_stopped(asyncio.wait_for(asyncio.open_connection(host, port), 2.0), stopping)
        except (OSError, TimeoutError) as exc:
            attempt += 1
            why = _connect_error(exc)
            if loop.time() >= deadline:
                raise ClusterFailure(f"could not join {host}:{port} within {timeout:g} s: {why}") from exc
            if attempt == 1 or attempt % 20 == 0:
                log.info("entry %s:%d not reachable yet (%s); retrying", host, port, why)
            await _unless_stopped(asyncio.sleep(min(0.25, max(0.0, deadline - loop.time()))), stopping)


async def run_worker(
    entry_host: str,
    join_port: int,
    worker_index: int,
    *,
    join_timeout: float,
    drain_timeout: float,
    stopping: asyncio.Event,
) -> int:
    """Join the entry and acknowledge its rounds. Exit status: 0 after a clean goodbye or a
    drain, 1 when the entry vanished (as a vLLM rank does when its peers die)."""
    try:
        reader, writer = await _connect(entry_host, join_port, join_timeout, stopping)
    except ClusterFailure as exc:
        log.error("%s", exc)
        return 1
    except _Stopped:
        log.info("stopped before reaching the entry; exiting")
        return 0
    try:
        writer.write(encode({"t": "hello", "worker": worker_index}))
        hello = asyncio.wait_for(reader.readline(), HELLO_TIMEOUT)
        reply = decode(await _unless_stopped(hello, stopping))
        if reply.get("t") != "welcome":
            log.error("entry rejected worker %d: %s", worker_index, reply.get("reason", reply))
            return 1
        log.info("worker %d joined %s:%d", worker_index, entry_host, join_port)
        return await _serve_rounds(reader, writer, drain_timeout, stopping)
    except _Stopped:
        log.info("stopped before the entry welcomed worker %d; exiting", worker_index)
        return 0
    except (TimeoutError, ValueError, ConnectionError) as exc:
        log.error("lost the entry: %s", exc or type(exc).__name__)
        return 0 if stopping.is_set() else 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _serve_rounds(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    drain_timeout: float,
    stopping: asyncio.Event,
) -> int:
    loop = asyncio.get_running_loop()
    drain_deadline: float | None = None
    stop_wait = asyncio.create_task(stopping.wait())
    try:
        while True:
            if stopping.is_set() and drain_deadline is None:
                # Keep acking so the entry can finish its in-flight requests.
                drain_deadline = loop.time() + drain_timeout
                log.info("draining: acknowledging steps for up to %g s", drain_timeout)
            timeout = None if drain_deadline is None else max(0.0, drain_deadline - loop.time())
            read = asyncio.create_task(reader.readline())
            waiters: set[asyncio.Task[Any]] = {read} if stop_wait.done() else {read, stop_wait}
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if read not in done:
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await read
                if drain_deadline is not None and loop.time() >= drain_deadline:
                    log.info("drain timeout reached; exiting")
                    return 0
                continue
            line = read.result()
            if not line:
                if stopping.is_set():
                    log.info("entry closed the connection while draining; exiting")
                    return 0
                log.error("entry connection dropped; exiting")
                return 1
            message = decode(line)
            kind = message.get("t")
            if kind in ("step", "hb"):
                writer.write(encode({"t": "ack", "n": message.get("n")}))
            elif kind == "bye":
                log.info("entry said goodbye; exiting")
                return 0
    finally:
        stop_wait.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stop_wait
