"""`phalanx sim`: start an entry (HTTP + join port) or a worker rank, and shut down like vLLM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress

from aiohttp import web

from phalanx.sim import logs
from phalanx.sim.blocks import BlockManager
from phalanx.sim.cluster import EntryCluster, run_worker
from phalanx.sim.config import SimConfig, build_parser, parse_config
from phalanx.sim.engine import Engine
from phalanx.sim.metrics import SimMetrics
from phalanx.sim.pdconfig import DEFAULT_LEASE_SECONDS
from phalanx.sim.pdflow import PdFlows
from phalanx.sim.scheduler import LatencyModel, Scheduler
from phalanx.sim.server import ServerState, SimServer
from phalanx.sim.sidechannel import Faults, KvListener

log = logging.getLogger("phalanx.sim")

FLUSH_TIMEOUT = 1.0  # how long open responses get to send their last events before exit


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)


def _ignore_signals_from_now() -> None:
    # Closing the loop closes its signal wakeup pipe before it removes the handlers: a stop signal
    # landing in between printed "Exception ignored when trying to write to the signal wakeup fd"
    # with a traceback into the pod's log. The process is on its way out, so a late signal is moot.
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


async def _run_then_ignore_signals(runner: Callable[[SimConfig], Awaitable[int]], config: SimConfig) -> int:
    try:
        return await runner(config)
    finally:
        _ignore_signals_from_now()


async def _wait_first(*events: asyncio.Event) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait_handlers(state: ServerState, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while state.active_handlers and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def _run_entry(config: SimConfig) -> int:
    stop = asyncio.Event()
    died = asyncio.Event()
    _on_signals(stop)
    state = ServerState()
    metrics = SimMetrics(
        config.served_model_names[0],
        max_model_len=config.max_model_len,
        block_size=config.block_size,
        num_gpu_blocks=config.num_gpu_blocks,
    )
    latency = LatencyModel(
        prefill_overhead=config.prefill_overhead,
        prefill_time_per_token=config.prefill_time_per_token,
        inter_token_latency=config.inter_token_latency,
        itl_batch_factor=config.itl_batch_factor,
    )
    scheduler = Scheduler(
        BlockManager(config.num_gpu_blocks, config.block_size),
        latency,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        max_model_len=config.max_model_len,
    )

    def on_fatal(reason: str) -> None:
        if state.dead is None:
            state.dead = reason
            log.error("engine dead (%s); failing in-flight requests and exiting", reason)
        engine.fail(reason)
        died.set()

    cluster: EntryCluster | None = None
    if config.group_size > 1:
        cluster = EntryCluster(config.host, config.join_port, config.group_size, on_fatal)
    engine = Engine(
        scheduler,
        metrics,
        seed=config.seed,
        barrier=cluster.barrier if cluster is not None else None,
        on_fatal=on_fatal,
        lease_seconds=_lease_seconds(config),
        drop_leases=config.fault_drop_leases,
    )
    listener = _kv_listener(config, engine)
    runner = web.AppRunner(
        SimServer(config, engine, state, PdFlows(config, engine, listener)).app(),
        access_log=None,
        shutdown_timeout=FLUSH_TIMEOUT,
        # A client that hangs up aborts its request, as in vLLM: it frees batch slots and KV blocks.
        handler_cancellation=True,
    )
    await runner.setup()
    tasks: list[asyncio.Task[None]] = []
    try:
        try:
            await web.TCPSite(runner, config.host, config.port).start()
            if cluster is not None:
                await cluster.start()
            if listener is not None:
                await listener.start()
        except OSError as exc:
            log.error("cannot listen: %s", exc)
            return 1
        log.info(
            "serving %s on http://%s:%d (max_model_len=%d, %d KV blocks of %d, max_num_seqs=%d, "
            "tp=%d, pp=%d%s)",
            ",".join(config.served_model_names),
            config.host,
            config.port,
            config.max_model_len,
            config.num_gpu_blocks,
            config.block_size,
            config.max_num_seqs,
            config.tensor_parallel_size,
            config.pipeline_parallel_size,
            ", zero latency" if config.zero_latency else "",
        )
        tasks.append(asyncio.create_task(engine.run()))
        tasks.append(asyncio.create_task(_become_ready(config, state, cluster)))
        await _wait_first(stop, died)
        if died.is_set():
            await _wait_handlers(state, FLUSH_TIMEOUT)
            return 1
        state.draining = True
        log.info("draining %d in-flight request(s) for up to %g s", engine.in_flight, config.drain_timeout)
        idle = asyncio.create_task(engine.wait_idle(config.drain_timeout))
        await _wait_first(died, _done_event(idle))
        if died.is_set():
            await _wait_handlers(state, FLUSH_TIMEOUT)
            return 1
        if not idle.result():
            log.warning("drain timeout: failing %d request(s)", engine.in_flight)
            engine.fail_all(503, "The server is shutting down.")
            await _wait_handlers(state, FLUSH_TIMEOUT)
        log.info("drained; exiting")
        return 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if cluster is not None:
            await cluster.close()
        if listener is not None:
            await listener.close()
        await runner.cleanup()


def _lease_seconds(config: SimConfig) -> float:
    """How long a finished prefill keeps its KV for the decode side."""
    if config.kv_transfer is not None:
        return config.kv_transfer.lease_seconds
    if config.sglang is not None:
        return config.sglang.waiting_timeout
    return DEFAULT_LEASE_SECONDS


def _kv_listener(config: SimConfig, engine: Engine) -> KvListener | None:
    """The prefill side's listener: vLLM's side channel (every connector-enabled engine, as the
    role is only a hint to NixlConnector) or SGLang's bootstrap server (prefill mode)."""
    faults = Faults(refuse_pulls=config.fault_refuse_pulls, bootstrap_delay=config.fault_bootstrap_delay)
    kv, sglang = config.kv_transfer, config.sglang
    if kv is not None:
        host, port = kv.side_channel_host, kv.side_channel_port
    elif sglang is not None and sglang.mode == "prefill":
        host, port = config.host, sglang.bootstrap_port
    else:
        return None
    return KvListener(engine, host, port, config.kv_bytes_per_token, faults)


def _done_event(task: asyncio.Task[bool]) -> asyncio.Event:
    event = asyncio.Event()
    task.add_done_callback(lambda _: event.set())
    return event


async def _become_ready(config: SimConfig, state: ServerState, cluster: EntryCluster | None) -> None:
    if config.startup_delay:
        log.info("loading weights (startup delay %g s)", config.startup_delay)
        await asyncio.sleep(config.startup_delay)
    if cluster is not None:
        await cluster.complete.wait()
    state.started = True
    log.info("ready")


async def _run_worker(config: SimConfig) -> int:
    stop = asyncio.Event()
    _on_signals(stop)
    assert config.entry_address is not None  # parse_config guarantees it for workers
    return await run_worker(
        config.entry_address,
        config.join_port,
        config.worker_index,
        join_timeout=config.join_timeout,
        drain_timeout=config.drain_timeout,
        stopping=stop,
    )


def main(argv: list[str]) -> int:
    if "--help" in argv or "-h" in argv:
        from phalanx.sim.help import print_help

        print_help(build_parser())
        return 0
    config = parse_config(argv, os.environ)
    logs.setup("entry" if config.is_entry else f"worker {config.worker_index}")
    runner = _run_entry if config.is_entry else _run_worker
    with suppress(KeyboardInterrupt):
        return asyncio.run(_run_then_ignore_signals(runner, config))
    return 130
