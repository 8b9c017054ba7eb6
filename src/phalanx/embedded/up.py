"""The foreground of `phalanx up`: start the daemon, show its state, stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from rich.console import Console
from rich.live import Live

from phalanx.api.autoscalingpolicy import AutoscalingPolicy
from phalanx.api.modelserving import ModelServing
from phalanx.embedded.daemon import Daemon, StartError, UpOptions
from phalanx.embedded.view import describe_event, render_status
from phalanx.http import loop as event_loop

REFRESH_SECONDS = 0.5


def run_up(
    servings: list[ModelServing],
    *,
    state_dir: Path,
    host: str,
    port: int,
    gpus: int | None,
    console: Console,
    policies: list[AutoscalingPolicy] | None = None,
) -> int:
    options = UpOptions(state_dir=state_dir, host=host, port=port, gpus=gpus)
    try:
        return event_loop.run(_run(Daemon(options), servings, console, policies or []))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: the reaper still kills every pod
        return 130


async def _run(
    daemon: Daemon,
    servings: list[ModelServing],
    console: Console,
    policies: list[AutoscalingPolicy] | None = None,
) -> int:
    loop = asyncio.get_running_loop()

    def stop_requested() -> None:
        daemon.stopping.set()
        # A second Ctrl-C interrupts a slow stop; the runtime's reaper still kills every pod.
        loop.remove_signal_handler(signal.SIGINT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested)
    try:
        await daemon.start(servings, policies)
    except StartError as exc:
        console.print(f"[red]error:[/red] {exc}")
        await daemon.stop()
        return 1
    except BaseException:
        await daemon.stop()  # nothing half-started may stay behind
        raise
    assert daemon.router is not None
    url = daemon.router.url
    console.print(
        f"phalanx up: OpenAI API at {url}/v1, web view at {url}/ui  (state {daemon.options.state_dir}; "
        "Ctrl-C or `phalanx down` stops everything)",
        highlight=False,
    )
    try:
        if console.is_terminal:
            await _live(daemon, console)
        else:
            await _event_lines(daemon, console)
    finally:
        console.print("phalanx up: stopping router and pods")
        await daemon.stop()
        console.print("phalanx up: stopped")
    if daemon.failure:
        console.print(f"[red]error:[/red] {daemon.failure}", highlight=False)
        return 1
    return 0


async def _live(daemon: Daemon, console: Console) -> None:
    with Live(console=console, auto_refresh=False, transient=False) as live:
        while not daemon.stopping.is_set():
            live.update(render_status(await daemon.status_payload()), refresh=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(daemon.stopping.wait(), REFRESH_SECONDS)


async def _event_lines(daemon: Daemon, console: Console) -> None:
    """Without a terminal (logs, CI): one line per event, and one when a ModelServing turns Available."""
    seen = 0
    available: dict[str, str] = {}
    while not daemon.stopping.is_set():
        payload = await daemon.status_payload()
        events = payload["events"]
        total = payload.get("eventCount", len(events))
        fresh = events[max(len(events) - (total - seen), 0) :] if total > seen else []
        seen = total
        for event in fresh:
            console.print(
                f"{event.get('time', '')} {event.get('type', '')} {describe_event(event)}",
                markup=False,
                highlight=False,
            )
        for ms in payload["servings"]:
            conditions = (ms.get("status") or {}).get("conditions") or []
            state = next((c["status"] for c in conditions if c["type"] == "Available"), "False")
            name = ms["metadata"]["name"]
            if available.get(name) != state:
                available[name] = state
                word = "available" if state == "True" else "not available"
                console.print(f"modelserving/{name} {word}", markup=False, highlight=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(daemon.stopping.wait(), REFRESH_SECONDS)
